//! Putting archived data back: volumes into new volumes or in place, database dumps into
//! their running services, the recipe into a folder.
