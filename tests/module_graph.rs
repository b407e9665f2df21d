//! Imports point one way. `src/lib.rs` lists the top-level modules in the order data
//! flows; a module may import (`crate::name`) only modules listed before it, so there is
//! no cycle between top-level modules and the list reads as the layering. Test files and
//! `#[cfg(test)]` sections are left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The `pub mod` (or `mod`) names of lib.rs, in order.
fn declared_modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source that ships: a file's text up to its first `#[cfg(test)]`, with comments
/// dropped; none for test files.
fn shipped(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    if name.contains("test") {
        return String::new();
    }
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(cut) => &text[..cut],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module a text names: `crate::name` and `use crate::{a, b::c}`.
fn referenced(text: &str, modules: &BTreeSet<&str>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find("};").or_else(|| group.find('}')).unwrap_or(0);
            let mut depth = 0;
            let mut start = true;
            let mut word = String::new();
            for c in group[..end].chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 && start && (c.is_ascii_alphanumeric() || c == '_') {
                    word.push(c);
                    continue;
                }
                if !word.is_empty() {
                    found.insert(std::mem::take(&mut word));
                }
                if depth == 0 {
                    start = c == ',' || (c.is_whitespace() && start);
                }
            }
            if !word.is_empty() {
                found.insert(word);
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.insert(word);
        }
    }
    found.retain(|m| modules.contains(m.as_str()));
    found
}

#[test]
fn top_level_modules_import_only_modules_listed_before_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = declared_modules(&fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(order.len() > 10, "lib.rs lists its modules: {order:?}");
    let names: BTreeSet<&str> = order.iter().map(String::as_str).collect();
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for module in &order {
        let mut files = Vec::new();
        let file = src.join(format!("{module}.rs"));
        if file.exists() {
            files.push(file);
        }
        rust_files(&src.join(module), &mut files);
        assert!(!files.is_empty(), "module {module} has no source");
        let mut uses = BTreeSet::new();
        for f in files {
            uses.extend(referenced(&shipped(&f), &names));
        }
        uses.remove(module.as_str());
        edges.insert(module, uses);
    }
    let position = |m: &str| order.iter().position(|o| o == m).unwrap();
    let mut wrong = Vec::new();
    for (module, uses) in &edges {
        for used in uses {
            if position(used) > position(module) {
                wrong.push(format!(
                    "{module} imports {used}, which lib.rs lists after it"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports must point back up lib.rs's module list:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_plain_imports() {
    let modules: BTreeSet<&str> = ["spec", "repo", "state", "api"].into_iter().collect();
    let text = "use crate::{spec::Kind, repo::{Catalog, Entry}, state};\nlet x = crate::api::f();";
    let found = referenced(text, &modules);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["api", "repo", "spec", "state"]
    );
    assert_eq!(
        declared_modules("//! doc\npub mod a;\nmod b;\npub use x;"),
        ["a", "b"]
    );
}
