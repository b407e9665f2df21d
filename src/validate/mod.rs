//! Loading and validating a whole specs tree: every error at once, never the first only.
//!
//! Validation runs in stages: the file (readable, text, YAML), the envelope (`apiVersion`,
//! `kind`), the kind's JSON Schema, the semantic checks of each object, and last the checks
//! across objects (unique `kind/name`, references that resolve). An object with any error
//! is reported with it and is not handed on to run.

pub mod semantic;
pub mod structural;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::diagnostic::{Diagnostic, FieldPath, Position, did_you_mean, most_specific_first};
use crate::load::positions::DocumentPositions;
use crate::load::{self, Document, SourceFile};
use crate::spec::common::Output;
use crate::spec::repository::{DEFAULT_REPOSITORY, RepositoryFormat};
use crate::spec::{Kind, Object, ObjectKey, Resource};
use structural::Problem;

/// A host as hostSelectors see it: its `--host` name and its labels (those of
/// `--host-labels` and `holdfast.dev/hostname`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl HostView {
    /// The host the settings describe.
    pub fn of(settings: &crate::settings::Settings) -> HostView {
        HostView {
            name: settings.host(),
            labels: settings.host_labels(),
        }
    }
}

/// One document of a spec file and what validation made of it.
#[derive(Debug)]
pub struct ObjectReport {
    pub file: PathBuf,
    /// 0-based index of the document in its file.
    pub document: usize,
    pub kind: Option<Kind>,
    pub name: Option<String>,
    /// The object, when it has no error at all.
    pub resource: Option<Resource>,
    pub errors: Vec<Diagnostic>,
    /// Set by [`Report::select_host`] when the object's hostSelector does not match the
    /// host: why, in one line. Such an object keeps its `resource` but is not run there.
    pub not_selected: Option<String>,
    positions: DocumentPositions,
}

impl ObjectReport {
    pub fn key(&self) -> Option<ObjectKey> {
        Some(ObjectKey {
            kind: self.kind?,
            name: self.name.clone()?,
        })
    }

    fn label(&self) -> Option<String> {
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => Some(format!("{kind}/{name}")),
            (Some(kind), None) => Some(kind.to_string()),
            _ => None,
        }
    }

    fn push(&mut self, at: Position, field: &FieldPath, message: String, hint: Option<String>) {
        let diagnostic = Diagnostic::new(&self.file, at, message)
            .with_object(self.label())
            .with_field(field)
            .with_hint(hint);
        self.errors.push(diagnostic);
        self.resource = None;
    }

    /// Where `metadata.name` is written, to point at for errors about the object as a whole.
    fn name_position(&self) -> Position {
        self.positions
            .value_or_ancestor(&FieldPath::root().key("metadata").key("name"))
    }
}

/// One spec file and its objects.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    /// Errors that belong to no single object: unreadable file, invalid YAML.
    pub errors: Vec<Diagnostic>,
    pub objects: Vec<ObjectReport>,
}

/// The outcome of validating a set of spec files.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<FileReport>,
    /// Errors about the paths themselves (missing, unreadable folders).
    pub errors: Vec<Diagnostic>,
    /// What was not read on purpose (folder links leading out of the tree); not errors.
    pub warnings: Vec<Diagnostic>,
}

impl Report {
    /// Every error, in file order and then by position.
    pub fn diagnostics(&self) -> Vec<&Diagnostic> {
        let mut all: Vec<&Diagnostic> = self.errors.iter().collect();
        for file in &self.files {
            let mut of_file: Vec<&Diagnostic> = file
                .errors
                .iter()
                .chain(file.objects.iter().flat_map(|o| o.errors.iter()))
                .collect();
            of_file.sort_by_key(|d| (d.line, d.column));
            all.extend(of_file);
        }
        all
    }

    pub fn is_valid(&self) -> bool {
        self.diagnostics().is_empty()
    }

    pub fn object_count(&self) -> usize {
        self.files.iter().map(|f| f.objects.len()).sum()
    }

    /// The objects that passed every check.
    pub fn valid_objects(&self) -> impl Iterator<Item = &Resource> {
        self.files
            .iter()
            .flat_map(|f| f.objects.iter())
            .filter_map(|o| o.resource.as_ref())
    }

    /// Marks the objects whose `spec.hostSelector` does not match `host` (see
    /// [`ObjectReport::not_selected`]), and makes an error of a reference, from an object
    /// the host runs, to a Repository or Notifier it does not select: a run would not find
    /// it there. A Repository or Notifier named only by objects of other hosts is no error.
    pub fn select_host(&mut self, host: &HostView) {
        for object in self.files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
            let selector = object.resource.as_ref().and_then(Resource::host_selector);
            if let Some(selector) = selector.filter(|s| !s.matches(&host.labels)) {
                object.not_selected = Some(crate::spec::host::not_selected_message(
                    selector,
                    &host.name,
                    &host.labels,
                ));
            }
        }
        let elsewhere = |kind: Kind| -> BTreeMap<String, String> {
            self.files
                .iter()
                .flat_map(|f| f.objects.iter())
                .filter(|o| o.kind == Some(kind))
                .filter_map(|o| Some((o.name.clone()?, o.not_selected.clone()?)))
                .collect()
        };
        let (repositories, notifiers) = (elsewhere(Kind::Repository), elsewhere(Kind::Notifier));
        for object in self.files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
            if object.not_selected.is_some() {
                continue;
            }
            let spec = FieldPath::root().key("spec");
            let output = |output: &Output, at: FieldPath| -> Vec<(Kind, String, FieldPath)> {
                if output.repositories.is_empty() {
                    vec![(
                        Kind::Repository,
                        output.repository.clone(),
                        at.key("repository"),
                    )]
                } else {
                    (output.repositories.iter().enumerate())
                        .map(|(i, n)| {
                            (Kind::Repository, n.clone(), at.key("repositories").index(i))
                        })
                        .collect()
                }
            };
            let named = match &object.resource {
                Some(Resource::BackupPolicy(p)) => {
                    let mut named = output(&p.spec.output, spec.key("output"));
                    for (i, entry) in p.spec.notify.iter().enumerate() {
                        if let Some(name) = &entry.reference {
                            let at = spec.key("notify").index(i).key("ref");
                            named.push((Kind::Notifier, name.clone(), at));
                        }
                    }
                    named
                }
                Some(Resource::Archive(a)) => a
                    .spec
                    .output
                    .as_ref()
                    .map(|o| output(o, spec.key("output")))
                    .unwrap_or_default(),
                Some(Resource::Restore(r)) => (r.spec.from.repository.iter())
                    .map(|n| {
                        (
                            Kind::Repository,
                            n.clone(),
                            spec.key("from").key("repository"),
                        )
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for (kind, name, field) in named {
                let why = match kind {
                    Kind::Repository => repositories.get(&name),
                    _ => notifiers.get(&name),
                };
                let Some(why) = why else { continue };
                let at = object.positions.value_or_ancestor(&field);
                object.push(
                    at,
                    &field,
                    format!("{kind} `{name}` is not selected on this host: its {why}"),
                    Some(format!(
                        "give this object the same hostSelector, or widen the {kind}'s"
                    )),
                );
            }
        }
    }

    /// The summary `holdfast validate --output json` prints.
    pub fn to_json(&self) -> JsonReport<'_> {
        JsonReport {
            valid: self.is_valid(),
            files: self.files.len(),
            objects: self.object_count(),
            errors: self.diagnostics(),
            warnings: self.warnings.iter().collect(),
        }
    }
}

#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub valid: bool,
    pub files: usize,
    pub objects: usize,
    pub errors: Vec<&'a Diagnostic>,
    pub warnings: Vec<&'a Diagnostic>,
}

/// Validates every spec file found under `paths` (files or folders).
pub fn validate_paths(paths: &[PathBuf]) -> Report {
    let found = load::discover(paths);
    let sources = found.files.iter().map(|p| load::read_file(p)).collect();
    let mut report = validate_sources(sources);
    report.errors.extend(found.errors);
    report.warnings.extend(found.warnings);
    report
}

/// Validates files already read, including the checks across them.
pub fn validate_sources(sources: Vec<SourceFile>) -> Report {
    let mut files: Vec<FileReport> = sources
        .into_iter()
        .map(|source| FileReport {
            objects: source
                .documents
                .into_iter()
                .map(|doc| check_document(&source.path, doc))
                .collect(),
            path: source.path,
            errors: source.errors,
        })
        .collect();
    check_unique_names(&mut files);
    check_references(&mut files);
    check_repository_references(&mut files);
    check_restic_outputs(&mut files);
    check_bundle_recipients(&mut files);
    check_notifier_references(&mut files);
    // What shows an object's errors in one line (the Stalled condition) takes the first.
    for object in files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
        most_specific_first(&mut object.errors);
    }
    Report {
        files,
        errors: Vec::new(),
        warnings: Vec::new(),
    }
}

fn check_document(file: &Path, doc: Document) -> ObjectReport {
    let mut report = ObjectReport {
        file: file.to_path_buf(),
        document: doc.index,
        kind: None,
        name: doc
            .value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource: None,
        errors: Vec::new(),
        not_selected: None,
        positions: doc.positions,
    };
    let mut problems = Vec::new();
    report.kind = structural::envelope(&doc.value, &report.positions, &mut problems);
    if let Some(kind) = report.kind {
        structural::against_schema(kind, &doc.value, &report.positions, &mut problems);
    }
    let structurally_sound = problems.is_empty();
    for Problem {
        at,
        field,
        message,
        hint,
    } in problems
    {
        report.push(at, &field, message, hint);
    }
    let (Some(kind), true) = (report.kind, structurally_sound) else {
        return report;
    };
    let written = semantic::check_written(&doc.value);
    match deserialize(kind, doc.value) {
        Ok(mut resource) => {
            let mut found = semantic::check(&resource);
            found.extend(written);
            // Relative paths mean the spec file's folder, wherever holdfast runs from.
            let folder = file.parent().unwrap_or(Path::new(""));
            let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
            match &mut resource {
                Resource::Repository(repository) => repository.spec.resolve_paths(&folder),
                Resource::Notifier(notifier) => notifier.spec.url.resolve_paths(&folder),
                Resource::BackupPolicy(policy) => {
                    for url in policy.spec.notify.iter_mut().filter_map(|n| n.url.as_mut()) {
                        url.resolve_paths(&folder);
                    }
                }
                _ => {}
            }
            if found.is_empty() {
                report.resource = Some(resource);
            }
            for problem in found {
                let at = report.positions.best(&problem.field);
                report.push(at, &problem.field, problem.message, problem.hint);
            }
        }
        // The schema is generated from the same types, so this means they disagree: still an
        // error for the user, never a panic.
        Err(e) => {
            let at = report.positions.start();
            report.push(
                at,
                &FieldPath::root(),
                format!("cannot read this {kind}: {e}"),
                None,
            );
        }
    }
    report
}

fn deserialize(kind: Kind, value: Value) -> Result<Resource, serde_json::Error> {
    Ok(match kind {
        Kind::BackupPolicy => Resource::BackupPolicy(serde_json::from_value::<Object<_>>(value)?),
        Kind::Archive => Resource::Archive(serde_json::from_value::<Object<_>>(value)?),
        Kind::Restore => Resource::Restore(serde_json::from_value::<Object<_>>(value)?),
        Kind::Repository => Resource::Repository(serde_json::from_value::<Object<_>>(value)?),
        Kind::Notifier => Resource::Notifier(serde_json::from_value::<Object<_>>(value)?),
        Kind::ContainerSchedule => {
            Resource::ContainerSchedule(serde_json::from_value::<Object<_>>(value)?)
        }
    })
}

/// A `kind/name` defined twice is an error on both objects, and neither runs.
fn check_unique_names(files: &mut [FileReport]) {
    let mut places: BTreeMap<ObjectKey, Vec<(usize, usize)>> = BTreeMap::new();
    for (f, file) in files.iter().enumerate() {
        for (o, object) in file.objects.iter().enumerate() {
            if let Some(key) = object.key() {
                places.entry(key).or_default().push((f, o));
            }
        }
    }
    for (key, at) in places.into_iter().filter(|(_, at)| at.len() > 1) {
        let locations: Vec<String> = at
            .iter()
            .map(|&(f, o)| {
                let pos = files[f].objects[o].name_position();
                format!("{}:{}:{}", files[f].path.display(), pos.line, pos.column)
            })
            .collect();
        for (i, &(f, o)) in at.iter().enumerate() {
            let others: Vec<&str> = locations
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, l)| l.as_str())
                .collect();
            let object = &mut files[f].objects[o];
            let pos = object.name_position();
            object.push(
                pos,
                &FieldPath::root().key("metadata").key("name"),
                format!(
                    "{key} is defined more than once (also at {}); neither copy runs",
                    others.join(", ")
                ),
                Some("rename one of them or delete the copy".into()),
            );
        }
    }
}

/// `Archive.spec.policyRef`, `Restore.spec.from.policy` and `ContainerSchedule.spec.after`
/// must name a BackupPolicy that exists somewhere in the specs (valid or not: an invalid
/// one is reported on its own).
fn check_references(files: &mut [FileReport]) {
    let policies: Vec<String> = files
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter(|o| o.kind == Some(Kind::BackupPolicy))
        .filter_map(|o| o.name.clone())
        .collect();
    for object in files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
        let references: Vec<(String, FieldPath)> = match &object.resource {
            Some(Resource::Archive(a)) => a
                .spec
                .policy_ref
                .clone()
                .map(|r| (r, FieldPath::root().key("spec").key("policyRef")))
                .into_iter()
                .collect(),
            Some(Resource::Restore(r)) => r
                .spec
                .from
                .policy
                .clone()
                .map(|p| (p, FieldPath::root().key("spec").key("from").key("policy")))
                .into_iter()
                .collect(),
            Some(Resource::ContainerSchedule(c)) => (c.spec.after.iter().enumerate())
                .map(|(i, p)| {
                    (
                        p.clone(),
                        FieldPath::root().key("spec").key("after").index(i),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        for (name, field) in references {
            if policies.contains(&name) {
                continue;
            }
            let at = object.positions.value_or_ancestor(&field);
            let hint = did_you_mean(&name, policies.iter().map(String::as_str));
            object.push(
                at,
                &field,
                format!("BackupPolicy `{name}` does not exist in the specs"),
                hint,
            );
        }
    }
}

/// Every repository an Archive, a BackupPolicy or a Restore names must be `default` or a
/// Repository that exists somewhere in the specs (valid or not: an invalid one is reported
/// on its own).
fn check_repository_references(files: &mut [FileReport]) {
    let mut known: Vec<String> = vec![DEFAULT_REPOSITORY.to_string()];
    known.extend(
        files
            .iter()
            .flat_map(|f| f.objects.iter())
            .filter(|o| o.kind == Some(Kind::Repository))
            .filter_map(|o| o.name.clone()),
    );
    let restic = restic_repositories(files);
    // Repositories that only take streams: remote or encrypted.
    let streams_only: Vec<String> = files
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter_map(|o| match &o.resource {
            Some(Resource::Repository(r))
                if r.spec.storage.local.is_none() || r.spec.encryption.is_some() =>
            {
                Some(r.metadata.name.clone())
            }
            _ => None,
        })
        .collect();
    for object in files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
        let spec = FieldPath::root().key("spec");
        let output_names = |output: &Output, at: FieldPath| -> Vec<(String, FieldPath)> {
            if output.repositories.is_empty() {
                vec![(output.repository.clone(), at.key("repository"))]
            } else {
                let list = at.key("repositories");
                (output.repositories.iter().enumerate())
                    .map(|(i, name)| (name.clone(), list.index(i)))
                    .collect()
            }
        };
        let named = match &object.resource {
            Some(Resource::BackupPolicy(p)) => output_names(&p.spec.output, spec.key("output")),
            Some(Resource::Archive(a)) => match &a.spec.output {
                Some(output) => output_names(output, spec.key("output")),
                None => Vec::new(),
            },
            Some(Resource::Restore(r)) => r
                .spec
                .from
                .repository
                .iter()
                .map(|name| (name.clone(), spec.key("from").key("repository")))
                .collect(),
            _ => Vec::new(),
        };
        // The folder format writes trees on this machine: never to a remote or encrypted
        // repository, and never copied.
        let folder = match &object.resource {
            Some(Resource::BackupPolicy(p)) => Some(&p.spec.output),
            Some(Resource::Archive(a)) => a.spec.output.as_ref(),
            _ => None,
        }
        .filter(|o| o.format == crate::spec::common::Format::Folder)
        // A restic repository refuses every format, the folder too.
        .filter(|o| !o.repositories().iter().any(|n| restic.contains(n)));
        if let Some(output) = folder {
            let names = output.repositories();
            let streamed = names.iter().find(|n| streams_only.contains(n));
            let problem = match (streamed, names.len()) {
                (Some(name), _) => Some(format!(
                    "the folder format writes a tree on this machine, and Repository `{name}` is remote or encrypted"
                )),
                (None, 2..) => Some(
                    "the folder format is not copied to other repositories; name one repository"
                        .to_string(),
                ),
                _ => None,
            };
            if let Some(problem) = problem {
                let field = spec.key("output").key("format");
                let at = object.positions.value_or_ancestor(&field);
                object.push(at, &field, problem, Some("use tar.zst".to_string()));
            }
        }
        for (name, field) in named {
            if known.contains(&name) {
                continue;
            }
            let at = object.positions.value_or_ancestor(&field);
            let hint = did_you_mean(&name, known.iter().map(String::as_str)).or_else(|| {
                Some(format!(
                    "name `{DEFAULT_REPOSITORY}` (the folder given by --repository) or a Repository object; known here: {}",
                    known.join(", ")
                ))
            });
            object.push(
                at,
                &field,
                format!("Repository `{name}` does not exist in the specs"),
                hint,
            );
        }
    }
}

/// The names of the valid Repositories of format restic.
fn restic_repositories(files: &[FileReport]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter_map(|o| match &o.resource {
            Some(Resource::Repository(r)) if r.spec.format == RepositoryFormat::Restic => {
                Some(r.metadata.name.clone())
            }
            _ => None,
        })
        .collect()
}

/// A BackupPolicy or an Archive that writes to a restic repository writes there alone (no
/// copies to or from it yet) and leaves out `output.format` and `output.level`: restic
/// stores files and compresses them itself. A format is refused even when it is the default
/// written out, so the spec never says something that does not happen; whether it was
/// written is read from the file, since the typed output always holds one. Archives and
/// Restores may name a restic repository like any other.
fn check_restic_outputs(files: &mut [FileReport]) {
    let restic = restic_repositories(files);
    if restic.is_empty() {
        return;
    }
    for object in files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
        let output = match &object.resource {
            Some(Resource::BackupPolicy(p)) => Some(p.spec.output.clone()),
            Some(Resource::Archive(a)) => a.spec.output.clone(),
            _ => None,
        };
        let Some(output) = output else {
            continue;
        };
        let at = FieldPath::root().key("spec").key("output");
        let names = output.repositories();
        let Some(first) = names.iter().find(|n| restic.contains(n)).cloned() else {
            continue;
        };
        let mut problems: Vec<(FieldPath, String, String)> = Vec::new();
        if names.len() > 1 {
            for (i, name) in output.repositories.iter().enumerate() {
                if restic.contains(name) {
                    problems.push((
                        at.key("repositories").index(i),
                        format!("copies to or from a restic repository are not supported yet, and Repository `{name}` is one"),
                        "name one repository; `restic copy` copies snapshots between restic repositories".to_string(),
                    ));
                }
            }
        }
        for field in ["format", "level"] {
            let path = at.key(field);
            if object.positions.get(&path).is_some() {
                problems.push((
                    path,
                    format!("a restic repository stores files and compresses them itself (zstd), so output.{field} does not apply to Repository `{first}`"),
                    format!("remove {field}"),
                ));
            }
        }
        for (field, message, hint) in problems {
            let position = object.positions.value_or_ancestor(&field);
            object.push(position, &field, message, Some(hint));
        }
    }
}

/// `include.bundle: true` encrypts the disaster-recovery bundle to the age recipients of
/// each repository the run writes to: every one of them must be a Repository encrypted
/// with age (the bundle holds secrets and is never stored in the clear). `default` and
/// unencrypted repositories have no recipient. A name that does not exist is said by
/// [`check_repository_references`].
fn check_bundle_recipients(files: &mut [FileReport]) {
    let encrypted: Vec<String> = files
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter_map(|o| match &o.resource {
            Some(Resource::Repository(r))
                if r.spec
                    .encryption
                    .as_ref()
                    .and_then(|e| e.age.as_ref())
                    .is_some_and(|a| !a.recipients.is_empty()) =>
            {
                Some(r.metadata.name.clone())
            }
            _ => None,
        })
        .collect();
    let known: Vec<String> = files
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter(|o| o.kind == Some(Kind::Repository))
        .filter_map(|o| o.name.clone())
        .collect();
    for object in files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
        let (include, output) = match &object.resource {
            Some(Resource::BackupPolicy(p)) => (Some(&p.spec.include), Some(&p.spec.output)),
            Some(Resource::Archive(a)) => (a.spec.include.as_ref(), a.spec.output.as_ref()),
            _ => (None, None),
        };
        if !include.is_some_and(|i| i.bundle) {
            continue;
        }
        let names = output
            .map(Output::repositories)
            .unwrap_or_else(|| vec![DEFAULT_REPOSITORY.to_string()]);
        let clear: Vec<String> = names
            .into_iter()
            .filter(|n| !encrypted.contains(n))
            .filter(|n| n == DEFAULT_REPOSITORY || known.contains(n))
            .collect();
        if clear.is_empty() {
            continue;
        }
        let field = FieldPath::root().key("spec").key("include").key("bundle");
        let at = object.positions.value_or_ancestor(&field);
        let shown: Vec<String> = clear
            .iter()
            .map(|n| match n.as_str() {
                DEFAULT_REPOSITORY => format!("`{n}` (the --repository folder)"),
                _ => format!("`{n}`"),
            })
            .collect();
        object.push(
            at,
            &field,
            format!(
                "the disaster-recovery bundle is encrypted to the age recipients of each repository the run writes to, and {} {} none: it holds the repositories' credentials, so it is never stored unencrypted",
                shown.join(", "),
                if clear.len() == 1 { "has" } else { "have" },
            ),
            Some(
                "write to Repository specs with encryption.age.recipients, or remove include.bundle and run `holdfast bundle create` yourself"
                    .to_string(),
            ),
        );
    }
}

/// Every `notify: [{ref: NAME}]` must name a Notifier that exists somewhere in the specs
/// (valid or not: an invalid one is reported on its own).
fn check_notifier_references(files: &mut [FileReport]) {
    let known: Vec<String> = files
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter(|o| o.kind == Some(Kind::Notifier))
        .filter_map(|o| o.name.clone())
        .collect();
    for object in files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
        let Some(Resource::BackupPolicy(policy)) = &object.resource else {
            continue;
        };
        let named: Vec<(String, FieldPath)> = (policy.spec.notify.iter().enumerate())
            .filter_map(|(i, entry)| {
                let field = FieldPath::root()
                    .key("spec")
                    .key("notify")
                    .index(i)
                    .key("ref");
                entry.reference.clone().map(|name| (name, field))
            })
            .collect();
        for (name, field) in named {
            if known.contains(&name) {
                continue;
            }
            let at = object.positions.value_or_ancestor(&field);
            let hint = did_you_mean(&name, known.iter().map(String::as_str)).or_else(|| {
                Some(if known.is_empty() {
                    "no Notifier exists in the specs; add one (kind: Notifier) or write the url here".to_string()
                } else {
                    format!("known here: {}", known.join(", "))
                })
            });
            object.push(
                at,
                &field,
                format!("Notifier `{name}` does not exist in the specs"),
                hint,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: holdfast.dev/v1alpha1\n";

    fn check(files: &[(&str, &str)]) -> Report {
        validate_sources(
            files
                .iter()
                .map(|(name, text)| load::read_str(Path::new(name), &format!("{HEAD}{text}")))
                .collect(),
        )
    }

    fn messages(report: &Report) -> Vec<String> {
        report.diagnostics().iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn a_host_runs_what_selects_it_and_may_not_name_what_does_not() {
        let text = "kind: Repository\nmetadata: {name: nas-disk}\nspec:\n  storage: {local: {path: /srv/d}}\n  hostSelector: {matchLabels: {role: nas}}\n---\n\
             apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: everywhere}\nspec:\n  schedule: '@daily'\n  targets: {stacks: [s]}\n  output: {repository: nas-disk}\n---\n\
             apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: nas-only}\nspec:\n  schedule: '@daily'\n  targets: {stacks: [s]}\n  output: {repository: nas-disk}\n  hostSelector: {matchLabels: {role: nas}}\n";
        let host = |name: &str, role: &str| HostView {
            name: name.into(),
            labels: [("role".to_string(), role.to_string())].into(),
        };
        let mut nas = check(&[("a.yaml", text)]);
        assert!(nas.is_valid(), "{:?}", messages(&nas));
        nas.select_host(&host("nas1", "nas"));
        assert!(nas.is_valid(), "{:?}", messages(&nas));
        assert_eq!(nas.valid_objects().count(), 3);

        let mut vps = check(&[("a.yaml", text)]);
        vps.select_host(&host("vps1", "vps"));
        assert_eq!(
            messages(&vps),
            [
                "a.yaml:14:24: BackupPolicy/everywhere: spec.output.repository: Repository `nas-disk` is not selected on this host: its hostSelector {role: nas} does not match this host vps1 (labels: {role: vps}) (hint: give this object the same hostSelector, or widen the Repository's)"
            ]
        );
        let not_selected: Vec<_> = vps.files[0]
            .objects
            .iter()
            .map(|o| o.not_selected.is_some())
            .collect();
        assert_eq!(not_selected, [true, false, true]);
    }

    #[test]
    fn accepts_what_users_write() {
        let cases = [
            "kind: BackupPolicy\nmetadata: {name: a}\nspec: {schedule: '@daily', targets: {volumes: [v]}}\n",
            "kind: BackupPolicy\nmetadata: {name: a}\nspec:\n  schedule: '0 3 * * 1-5'\n  timezone: America/New_York\n  targets: {selector: {matchLabels: {holdfast.dev/backup: 'true'}}}\n  retention: {keepWithin: 48h}\n",
            "kind: BackupPolicy\nmetadata: {name: a}\nspec:\n  schedule: '0 3 * * *'\n  targets: {containers: [c]}\n  dumps: [{container: c, engine: sqlite, databases: [/data/a.db]}]\n  output: {format: tar, repository: default}\n",
            "kind: Archive\nmetadata: {name: a}\nspec: {targets: {stacks: [s]}, ttl: 24h, deletionPolicy: Delete}\n",
            "kind: Restore\nmetadata: {name: a}\nspec: {from: {archive: x-20261125T030000Z}, mode: InPlace, stop: stack}\n",
            "kind: Restore\nmetadata: {name: a}\nspec: {from: {archive: x}, volumeMapping: {a: b_check}, recipeTo: /srv/r}\n",
        ];
        for text in cases {
            let report = check(&[("a.yaml", text)]);
            assert!(report.is_valid(), "{text}\n{:#?}", messages(&report));
            assert_eq!(report.valid_objects().count(), 1);
        }
    }

    #[test]
    fn references_resolve_across_files_even_to_invalid_policies() {
        let policy = "kind: BackupPolicy\nmetadata: {name: p}\nspec: {schedule: 'bad', targets: {stacks: [s]}}\n";
        let archive = "kind: Archive\nmetadata: {name: a}\nspec: {policyRef: p}\n";
        let restore = "kind: Restore\nmetadata: {name: r}\nspec: {from: {policy: p, at: '2026-11-25T03:00:00Z'}}\n";
        let report = check(&[("p.yaml", policy), ("a.yaml", archive), ("r.yaml", restore)]);
        let errors = messages(&report);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("p.yaml:4:18: BackupPolicy/p: spec.schedule: `bad` has 1 field;"),
            "{}",
            errors[0]
        );
        let valid: Vec<&str> = report.valid_objects().map(|r| r.name()).collect();
        assert_eq!(valid, ["a", "r"]);
    }

    #[test]
    fn same_name_in_different_kinds_is_fine() {
        let policy = "kind: BackupPolicy\nmetadata: {name: x}\nspec: {schedule: '@daily', targets: {stacks: [s]}}\n";
        let archive = "kind: Archive\nmetadata: {name: x}\nspec: {policyRef: x}\n";
        assert!(check(&[("a.yaml", policy), ("b.yaml", archive)]).is_valid());
    }

    #[test]
    fn duplicates_within_one_file_stall_both() {
        let doc = "kind: Archive\nmetadata: {name: x}\nspec: {targets: {volumes: [v]}}\n";
        let report = check(&[("a.yaml", &format!("{doc}---\n{HEAD}{doc}"))]);
        assert_eq!(report.diagnostics().len(), 2);
        assert_eq!(report.valid_objects().count(), 0);
    }

    #[test]
    fn archive_shape_rules() {
        let both =
            "kind: Archive\nmetadata: {name: a}\nspec: {policyRef: p, targets: {stacks: [s]}}\n";
        let policy = "kind: BackupPolicy\nmetadata: {name: p}\nspec: {schedule: '@daily', targets: {stacks: [s]}}\n";
        let errors = messages(&check(&[("a.yaml", both), ("p.yaml", policy)]));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("spec.targets: `targets` cannot be set together with policyRef")
        );
        let neither = "kind: Archive\nmetadata: {name: a}\nspec: {ttl: 1h}\n";
        let errors = messages(&check(&[("a.yaml", neither)]));
        assert!(
            errors[0].contains("an Archive needs either policyRef or targets"),
            "{errors:#?}"
        );
    }

    #[test]
    fn restore_rules() {
        let at_without_policy =
            "kind: Restore\nmetadata: {name: r}\nspec: {from: {archive: x, at: latest}}\n";
        assert!(messages(&check(&[("r.yaml", at_without_policy)]))[0].contains("spec.from.at"));
        let bad_time = "kind: BackupPolicy\nmetadata: {name: p}\nspec: {schedule: '@daily', targets: {stacks: [s]}}\n---\n";
        let bad_time = format!(
            "{bad_time}{HEAD}kind: Restore\nmetadata: {{name: r}}\nspec: {{from: {{policy: p, at: yesterday}}}}\n"
        );
        let errors = messages(&check(&[("r.yaml", &bad_time)]));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("`yesterday` is neither `latest` nor an RFC 3339 time"));
        let relative = "kind: Restore\nmetadata: {name: r}\nspec: {from: {archive: x}, recipeTo: out/dir, volumeMapping: {a: -bad}}\n";
        assert_eq!(messages(&check(&[("r.yaml", relative)])).len(), 2);
    }

    #[test]
    fn restore_options_that_would_do_nothing_are_refused() {
        let restore = |spec: &str| {
            format!(
                "kind: Restore\nmetadata: {{name: r}}\nspec: {{from: {{archive: x}}, {spec}}}\n"
            )
        };
        for (spec, field, says) in [
            (
                "targets: {volumes: [v]}, replayDumps: true",
                "spec.replayDumps",
                "nothing would be replayed",
            ),
            (
                "targets: {volumes: [v]}, recipeTo: /srv/r",
                "spec.recipeTo",
                "nothing would be written",
            ),
            (
                "dumpsOnly: true, targets: {volumes: [v]}",
                "spec.dumpsOnly",
                "targets.volumes would do nothing",
            ),
            (
                "dumpsOnly: true, volumeMapping: {a: bb}",
                "spec.dumpsOnly",
                "volumeMapping would do nothing",
            ),
            (
                "dumpsOnly: true, mode: InPlace, stop: stack",
                "spec.dumpsOnly",
                "mode: InPlace would do nothing",
            ),
            (
                "dumpsOnly: true, recipeTo: /srv/r",
                "spec.dumpsOnly",
                "recipeTo would do nothing",
            ),
        ] {
            let errors = messages(&check(&[("r.yaml", &restore(spec))]));
            assert_eq!(errors.len(), 1, "{spec}: {errors:#?}");
            assert!(
                errors[0].contains(field) && errors[0].contains(says),
                "{spec}: {errors:#?}"
            );
        }
        for fine in [
            "targets: {stacks: [s], volumes: [v]}, replayDumps: true, recipeTo: /srv/r",
            "dumpsOnly: true, targets: {stacks: [s]}",
            "dumpsOnly: true",
        ] {
            let errors = messages(&check(&[("r.yaml", &restore(fine))]));
            assert!(errors.is_empty(), "{fine}: {errors:#?}");
        }
    }

    #[test]
    fn an_objects_first_error_is_the_most_specific() {
        // The Stalled condition shows the first error: the misspelling with its "did you
        // mean", not the missing field it causes.
        let text = "kind: BackupPolicy\nmetadata: {name: p}\nspec:\n  schedul: '@daily'\n  targets: {stacks: [s]}\n";
        let report = check(&[("p.yaml", text)]);
        let errors = &report.files[0].objects[0].errors;
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(errors[0].message, "unknown field `schedul`");
        assert_eq!(errors[0].hint.as_deref(), Some("did you mean `schedule`?"));
        assert_eq!(errors[1].message, "missing required field `schedule`");
        // Printed, they stay in the order of the file.
        let printed = report.diagnostics();
        assert!(printed[0].line <= printed[1].line);
    }

    #[test]
    fn a_password_written_as_text_is_told_the_forms_even_after_redaction() {
        let text = "kind: BackupPolicy\nmetadata: {name: p}\nspec:\n  schedule: '@daily'\n  targets: {stacks: [s]}\n  dumps: [{service: db, engine: postgres, password: shop-secret}]\n";
        let errors = messages(&check(&[("p.yaml", text)]));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        // As a Stalled condition shows it, redacted like every status message.
        let shown = crate::status::redact(&errors[0]);
        assert!(!shown.contains("shop-secret"), "{shown}");
        for form in ["{value: …}", "{fromEnv: VARIABLE}", "{fromFile: PATH}"] {
            assert!(shown.contains(form), "{shown}");
        }
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let text = "kind: BackupPolicy\nmetadata: {name: p}\nspec:\n  schedule: '@daily'\n  targets: {stacks: [s]}\n  dumps: [{service: db, engine: postgres, password: {value: hunter2, fromEnv: PW}}]\n";
        let errors = messages(&check(&[("p.yaml", text)]));
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].contains("hunter2"), "{}", errors[0]);
        for (yaml, secret) in [
            ("password: hunter2", "hunter2"),
            ("password: {value: 8675309}", "8675309"),
            ("password: {value: [s3cr3t]}", "s3cr3t"),
        ] {
            let text = format!(
                "kind: BackupPolicy\nmetadata: {{name: p}}\nspec:\n  schedule: '@daily'\n  targets: {{stacks: [s]}}\n  dumps: [{{service: db, engine: postgres, {yaml}}}]\n"
            );
            let errors = messages(&check(&[("p.yaml", &text)]));
            assert!(!errors.is_empty(), "{yaml}");
            assert!(errors.iter().all(|e| !e.contains(secret)), "{errors:#?}");
        }
    }

    /// A syntactically valid age X25519 recipient (its identity was thrown away).
    const RECIPIENT: &str = "age1xsxavf5n4ve675qs3e04gxtj00v3977g9qg7eg94l2eu02sf2qrqljc80f";

    fn repository(name: &str, spec: &str) -> String {
        format!("kind: Repository\nmetadata: {{name: {name}}}\nspec:\n{spec}")
    }

    const S3: &str = "  storage:\n    s3:\n      endpoint: http://127.0.0.1:3900\n      region: garage\n      bucket: holdfast\n      accessKeyId: {fromEnv: S3_KEY_ID}\n      secretAccessKey: {fromFile: s3-secret}\n";

    #[test]
    fn repositories_users_write_are_accepted() {
        let sftp = "  storage:\n    sftp: {host: nas.lan, user: backup, path: /srv/holdfast, privateKeyFile: /etc/holdfast/id, knownHostsFile: keys/known_hosts}\n  appendOnly: true\n";
        let local = format!(
            "  storage: {{local: {{path: /mnt/usb}}}}\n  encryption: {{age: {{recipients: [{RECIPIENT}], identityFile: age.key}}}}\n"
        );
        for spec in [S3, sftp, &local] {
            let report = check(&[("specs/r.yaml", &repository("offsite", spec))]);
            assert!(report.is_valid(), "{spec}\n{:#?}", messages(&report));
        }
    }

    #[test]
    fn repository_paths_are_taken_from_the_spec_files_folder() {
        let spec = format!(
            "  storage: {{local: {{path: usb}}}}\n  encryption: {{age: {{recipients: [{RECIPIENT}], identityFile: /etc/age.key}}}}\n"
        );
        let report = check(&[("specs/r.yaml", &repository("usb", &spec))]);
        let Some(Resource::Repository(r)) = report.valid_objects().next() else {
            panic!("{:#?}", messages(&report));
        };
        let folder = std::path::absolute("specs").unwrap();
        let path = r.spec.storage.local.as_ref().unwrap().path.clone();
        assert_eq!(Path::new(&path), folder.join("usb"));
        let age = r.spec.encryption.as_ref().unwrap().age.as_ref().unwrap();
        assert_eq!(age.identity_file.as_deref(), Some("/etc/age.key"));
        let report = check(&[("specs/r.yaml", &repository("s3", S3))]);
        let Some(Resource::Repository(r)) = report.valid_objects().next() else {
            panic!("{:#?}", messages(&report));
        };
        let s3 = r.spec.storage.s3.as_ref().unwrap();
        let file = s3.secret_access_key.from_file.clone().unwrap();
        assert_eq!(Path::new(&file), folder.join("s3-secret"));
        assert_eq!(s3.access_key_id.from_env.as_deref(), Some("S3_KEY_ID"));
    }

    #[test]
    fn repository_rules() {
        let sftp = |fields: &str| {
            format!(
                "  storage:\n    sftp: {{host: nas, user: u, privateKeyFile: /k, knownHostsFile: /h, {fields}}}\n"
            )
        };
        let s3 = |replace: &str, with: &str| S3.replace(replace, with);
        let cases: Vec<(String, &str, &str)> = vec![
            ("  storage: {}\n".into(), "spec.storage", "set exactly one of s3, sftp or local"),
            (
                "  storage: {local: {path: /a}, sftp: {host: h, user: u, path: /p, privateKeyFile: /k, knownHostsFile: /h}}\n".into(),
                "spec.storage",
                "found sftp and local",
            ),
            (s3("http://127.0.0.1:3900", "127.0.0.1:3900"), "spec.storage.s3.endpoint", "is not an http:// or https:// URL"),
            (s3("http://127.0.0.1:3900", "https://"), "spec.storage.s3.endpoint", "names no host"),
            (s3("bucket: holdfast", "bucket: Holdfast"), "spec.storage.s3.bucket", "is not a valid bucket name"),
            (s3("bucket: holdfast", "bucket: hf"), "spec.storage.s3.bucket", "a bucket name has 3 to 63"),
            (s3("bucket: holdfast", "bucket: -holdfast"), "spec.storage.s3.bucket", "is not a valid bucket name"),
            (s3("region: garage", "region: ''"), "spec.storage.s3.region", "must not be empty"),
            (s3("region: garage", "region: garage\n      prefix: /host1"), "spec.storage.s3.prefix", "starts with '/'"),
            (
                s3("{fromEnv: S3_KEY_ID}", "{fromEnv: A, fromFile: /b}"),
                "spec.storage.s3.accessKeyId",
                "set exactly one of fromEnv or fromFile, not both",
            ),
            (s3("{fromEnv: S3_KEY_ID}", "{}"), "spec.storage.s3.accessKeyId", "set exactly one of fromEnv or fromFile"),
            (sftp("path: srv/holdfast"), "spec.storage.sftp.path", "is not an absolute path on the server"),
            (sftp("path: /srv, port: 0"), "spec.storage.sftp.port", "port 0"),
            (
                sftp("path: /srv").replace("host: nas", "host: ''"),
                "spec.storage.sftp.host",
                "the host must not be empty",
            ),
            ("  storage: {local: {path: ''}}\n".into(), "spec.storage.local.path", "must not be empty"),
            (
                "  storage: {local: {path: /a}}\n  encryption: {}\n".into(),
                "spec.encryption",
                "encryption names no method",
            ),
            (
                "  storage: {local: {path: /a}}\n  encryption: {age: {recipients: []}}\n".into(),
                "spec.encryption.age.recipients",
                "list at least one recipient",
            ),
            (
                format!("  storage: {{local: {{path: /a}}}}\n  encryption: {{age: {{recipients: [{RECIPIENT}, age1nope]}}}}\n"),
                "spec.encryption.age.recipients[1]",
                "not an age X25519 recipient",
            ),
        ];
        for (spec, field, says) in &cases {
            let errors = messages(&check(&[("r.yaml", &repository("offsite", spec))]));
            assert_eq!(errors.len(), 1, "{spec}: {errors:#?}");
            assert!(
                errors[0].contains(&format!("Repository/offsite: {field}: "))
                    && errors[0].contains(says),
                "{spec}: {errors:#?}"
            );
        }
        let errors = messages(&check(&[(
            "r.yaml",
            &repository("default", "  storage: {local: {path: /a}}\n"),
        )]));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains(
                "metadata.name: `default` is the name of the folder given by --repository"
            ),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_literal_secret_in_a_repository_is_told_to_use_the_host() {
        let text = repository(
            "offsite",
            &S3.replace("{fromEnv: S3_KEY_ID}", "{value: hunter2}"),
        );
        let report = check(&[("r.yaml", &text)]);
        let errors = &report.files[0].objects[0].errors;
        assert_eq!(
            errors[0].message,
            "unknown field `value`: a secret holdfast reads is never written in a spec"
        );
        let hint = errors[0].hint.clone().unwrap();
        assert!(
            hint.contains("{fromEnv: VARIABLE}") && hint.contains("{fromFile: PATH}"),
            "{hint}"
        );
        assert!(messages(&report).iter().all(|e| !e.contains("hunter2")));
        let text = repository("offsite", &S3.replace("{fromEnv: S3_KEY_ID}", "hunter2"));
        let errors = messages(&check(&[("r.yaml", &text)]));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let shown = crate::status::redact(&errors[0]);
        assert!(
            !shown.contains("hunter2") && shown.contains("{fromEnv: VARIABLE}"),
            "{shown}"
        );
    }

    #[test]
    fn outputs_name_repositories_that_exist() {
        let policy = |output: &str| {
            format!(
                "kind: BackupPolicy\nmetadata: {{name: p}}\nspec: {{schedule: '@daily', targets: {{stacks: [s]}}, output: {output}}}\n"
            )
        };
        let offsite = repository("offsite", "  storage: {local: {path: /a}}\n");
        for fine in [
            "{repositories: [default, offsite]}",
            "{repository: offsite}",
            "{repository: default}",
        ] {
            let errors = messages(&check(&[("p.yaml", &policy(fine)), ("r.yaml", &offsite)]));
            assert!(errors.is_empty(), "{fine}: {errors:#?}");
        }
        for (output, field, says) in [
            (
                "{repositories: [default, ofsite]}",
                "spec.output.repositories[1]",
                "Repository `ofsite` does not exist",
            ),
            (
                "{repository: offsit}",
                "spec.output.repository",
                "Repository `offsit` does not exist",
            ),
            (
                "{repository: offsite, repositories: [default]}",
                "spec.output.repository",
                "set repository or repositories, not both",
            ),
            (
                "{repositories: [offsite, offsite]}",
                "spec.output.repositories[1]",
                "`offsite` is named twice",
            ),
        ] {
            let errors = messages(&check(&[("p.yaml", &policy(output)), ("r.yaml", &offsite)]));
            assert_eq!(errors.len(), 1, "{output}: {errors:#?}");
            assert!(
                errors[0].contains(&format!("BackupPolicy/p: {field}: "))
                    && errors[0].contains(says),
                "{output}: {errors:#?}"
            );
        }
        let report = check(&[
            ("p.yaml", &policy("{repositories: [default, ofsite]}")),
            ("r.yaml", &offsite),
        ]);
        let hint = report.diagnostics()[0].hint.clone();
        assert_eq!(hint.as_deref(), Some("did you mean `offsite`?"));
        // Without any Repository, the hint says what a name may be.
        let report = check(&[("p.yaml", &policy("{repository: nas}"))]);
        let hint = report.diagnostics()[0].hint.clone().unwrap();
        assert!(hint.contains("known here: default"), "{hint}");
        // An Archive's output and a Restore's source are checked the same way.
        let archive = "kind: Archive\nmetadata: {name: a}\nspec: {targets: {stacks: [s]}, output: {repositories: [nas]}}\n";
        let restore =
            "kind: Restore\nmetadata: {name: r}\nspec: {from: {archive: x, repository: ofsite}}\n";
        let errors = messages(&check(&[
            ("a.yaml", archive),
            ("b.yaml", restore),
            ("r.yaml", &offsite),
        ]));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].contains(
                "Archive/a: spec.output.repositories[0]: Repository `nas` does not exist"
            ),
            "{errors:#?}"
        );
        assert!(
            errors[1]
                .contains("Restore/r: spec.from.repository: Repository `ofsite` does not exist"),
            "{errors:#?}"
        );
        let restore =
            "kind: Restore\nmetadata: {name: r}\nspec: {from: {archive: x, repository: offsite}}\n";
        assert!(check(&[("b.yaml", restore), ("r.yaml", &offsite)]).is_valid());
    }

    #[test]
    fn the_folder_format_stays_in_one_unencrypted_local_repository() {
        let policy = |output: &str| {
            format!(
                "kind: BackupPolicy\nmetadata: {{name: p}}\nspec: {{schedule: '@daily', targets: {{stacks: [s]}}, output: {output}}}\n"
            )
        };
        let usb = repository("usb", "  storage: {local: {path: /a}}\n");
        let offsite = repository(
            "offsite",
            "  storage: {s3: {endpoint: 'http://127.0.0.1:3900', bucket: bkt, accessKeyId: {fromEnv: A}, secretAccessKey: {fromEnv: B}}}\n",
        );
        let specs = |output: &str| {
            let policy = policy(output);
            messages(&check(&[
                ("p.yaml", &policy),
                ("u.yaml", &usb),
                ("o.yaml", &offsite),
            ]))
        };
        let fine = specs("{format: folder, repository: usb}");
        assert!(fine.is_empty(), "{fine:#?}");
        for (output, says) in [
            (
                "{format: folder, repository: offsite}",
                "Repository `offsite` is remote or encrypted",
            ),
            (
                "{format: folder, repositories: [default, usb]}",
                "is not copied",
            ),
        ] {
            let errors = specs(output);
            assert_eq!(errors.len(), 1, "{output}: {errors:#?}");
            assert!(
                errors[0].contains("spec.output.format") && errors[0].contains(says),
                "{output}: {errors:#?}"
            );
        }
    }

    #[test]
    fn a_bundle_needs_an_age_recipient_in_every_repository_written_to() {
        let policy = |output: &str| {
            format!(
                "kind: BackupPolicy\nmetadata: {{name: p}}\nspec: {{schedule: '@daily', targets: {{stacks: [s]}}, include: {{bundle: true}}, output: {output}}}\n"
            )
        };
        let usb = repository("usb", "  storage: {local: {path: /a}}\n");
        let sealed = repository(
            "sealed",
            "  storage: {local: {path: /b}}\n  encryption: {age: {recipients: [age1q2fy53wcf46sc83ajghgrsj7dgjpx4sv9cr4y2d4wwllkfm0k5jq9rdss3]}}\n",
        );
        let specs = |output: &str| {
            let policy = policy(output);
            messages(&check(&[
                ("p.yaml", &policy),
                ("u.yaml", &usb),
                ("s.yaml", &sealed),
            ]))
        };
        let fine = specs("{repository: sealed}");
        assert!(fine.is_empty(), "{fine:#?}");
        for (output, says) in [
            ("{}", "`default` (the --repository folder) has none"),
            ("{repositories: [sealed, usb]}", "`usb` has none"),
        ] {
            let errors = specs(output);
            assert_eq!(errors.len(), 1, "{output}: {errors:#?}");
            assert!(
                errors[0].contains("spec.include.bundle") && errors[0].contains(says),
                "{output}: {errors:#?}"
            );
        }
    }

    const RESTIC: &str = "  storage: {local: {path: restic}}\n  format: restic\n  password: {fromFile: restic-password}\n";

    #[test]
    fn restic_repository_rules() {
        let report = check(&[("specs/r.yaml", &repository("vault", RESTIC))]);
        let Some(Resource::Repository(r)) = report.valid_objects().next() else {
            panic!("{:#?}", messages(&report));
        };
        let folder = std::path::absolute("specs").unwrap();
        let password = r.spec.password.as_ref().unwrap().from_file.clone().unwrap();
        assert_eq!(Path::new(&password), folder.join("restic-password"));
        let s3 = format!("{S3}  format: restic\n  password: {{fromEnv: RESTIC_PASSWORD}}\n");
        assert!(check(&[("r.yaml", &repository("vault", &s3))]).is_valid());
        let age = format!("  encryption: {{age: {{recipients: [{RECIPIENT}]}}}}\n");
        let cases: Vec<(String, &str, &str)> = vec![
            (
                RESTIC.replace("  password: {fromFile: restic-password}\n", ""),
                "spec.format",
                "a restic repository needs a password",
            ),
            (
                RESTIC.replace("{fromFile: restic-password}", "{fromEnv: P, fromFile: /p}"),
                "spec.password",
                "set exactly one of fromEnv or fromFile, not both",
            ),
            (
                RESTIC.replace("{fromFile: restic-password}", "{}"),
                "spec.password",
                "set exactly one of fromEnv or fromFile",
            ),
            (
                RESTIC.replace("  format: restic\n", ""),
                "spec.password",
                "only a restic repository has a password",
            ),
            // The age fields are not checked as well: encryption goes as a whole.
            (
                format!("{RESTIC}{}", age.replace(RECIPIENT, "age1nope")),
                "spec.encryption",
                "a restic repository is encrypted with its password",
            ),
        ];
        for (spec, field, says) in &cases {
            let errors = messages(&check(&[("r.yaml", &repository("vault", spec))]));
            assert_eq!(errors.len(), 1, "{spec}: {errors:#?}");
            assert!(
                errors[0].contains(&format!("Repository/vault: {field}: "))
                    && errors[0].contains(says),
                "{spec}: {errors:#?}"
            );
        }
    }

    #[test]
    fn a_restic_repositorys_errors_keep_their_advice_in_a_stalled_condition() {
        // Status messages are redacted after a field named like a secret, and after
        // `password: `; the advice must survive both.
        for (spec, advice) in [
            (
                RESTIC.replace("  password: {fromFile: restic-password}\n", ""),
                "{fromEnv: VARIABLE} or {fromFile: PATH}",
            ),
            (
                RESTIC.replace("  format: restic\n", ""),
                "add format: restic, or to encrypt archives use encryption.age",
            ),
        ] {
            let errors = messages(&check(&[("r.yaml", &repository("vault", &spec))]));
            let shown = crate::status::redact(&errors[0]);
            assert!(shown.contains(advice), "{shown}");
            assert!(!shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn outputs_to_a_restic_repository_write_there_alone_in_restics_own_format() {
        let vault = repository("vault", RESTIC);
        let remote = repository(
            "remote",
            &format!("{S3}  format: restic\n  password: {{fromEnv: RESTIC_PASSWORD}}\n"),
        );
        let specs = |doc: &str| {
            messages(&check(&[
                ("p.yaml", doc),
                ("v.yaml", &vault),
                ("r.yaml", &remote),
            ]))
        };
        let policy = |output: &str| {
            format!(
                "kind: BackupPolicy\nmetadata: {{name: p}}\nspec: {{schedule: '@daily', targets: {{stacks: [s]}}, output: {output}}}\n"
            )
        };
        let archive = |output: &str| {
            format!(
                "kind: Archive\nmetadata: {{name: a}}\nspec: {{targets: {{stacks: [s]}}, output: {output}}}\n"
            )
        };
        for fine in [
            policy("{repository: vault}"),
            policy("{repositories: [remote]}"),
            archive("{repository: remote}"),
            // Formats and copies stay as they were for other repositories.
            policy("{repository: default, format: tar.gz, level: 9}"),
            "kind: Restore\nmetadata: {name: r}\nspec: {from: {archive: x, repository: vault}}\n"
                .to_string(),
        ] {
            let errors = specs(&fine);
            assert!(errors.is_empty(), "{fine}: {errors:#?}");
        }
        for (doc, field, says) in [
            (
                policy("{repositories: [default, vault]}"),
                "spec.output.repositories[1]",
                "copies to or from a restic repository are not supported yet, and Repository `vault` is one",
            ),
            (
                archive("{repositories: [remote, default]}"),
                "spec.output.repositories[0]",
                "Repository `remote` is one",
            ),
            (
                policy("{repository: vault, format: tar.zst}"),
                "spec.output.format",
                "output.format does not apply to Repository `vault`",
            ),
            (
                archive("{repository: vault, level: 3}"),
                "spec.output.level",
                "output.level does not apply to Repository `vault`",
            ),
            // The restic rule speaks alone, not with the folder format's own.
            (
                policy("{repository: remote, format: folder}"),
                "spec.output.format",
                "compresses them itself (zstd)",
            ),
        ] {
            let errors = specs(&doc);
            assert_eq!(errors.len(), 1, "{doc}: {errors:#?}");
            assert!(
                errors[0].contains(&format!(": {field}: ")) && errors[0].contains(says),
                "{doc}: {errors:#?}"
            );
        }
    }

    #[test]
    fn outputs_list_their_repositories_in_order() {
        use crate::spec::common::Output;
        let one = Output::default();
        assert_eq!(one.repositories(), ["default"]);
        let many = Output {
            repositories: vec!["offsite".into(), "default".into()],
            ..Output::default()
        };
        assert_eq!(many.repositories(), ["offsite", "default"]);
    }
}
