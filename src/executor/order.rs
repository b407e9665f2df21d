//! The order a backup stops containers in: a container before the services it depends
//! on, so that nothing runs on without what it needs; they start again in reverse.
//!
//! What a service depends on comes from the first of:
//! - Compose v2's `com.docker.compose.depends_on` label on its containers;
//! - the stack's compose files, for Compose v1, which labels no dependencies:
//!   `depends_on` (list or mapping), and what Compose also starts first, `links`,
//!   `volumes_from` and `network_mode: service:…` ([`parse_compose_needs`]). A file that
//!   cannot be read or parsed costs its stack the order (it goes by name, with a
//!   warning), never the backup;
//! - nothing: then by container name.
//!
//! `consistency.stopOrder` overrides them: the containers it names (by container or
//! service name) stop first, in its order; the others stop after them, in dependency
//! order, and so start before them.
//!
//! [`stop_order`] is pure; only [`compose_deps`] reads files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::docker::{CONFIG_FILES_LABEL, ContainerInfo, DEPENDS_ON_LABEL, Stack};

/// What a stack's compose files say about its services' dependencies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComposeDeps {
    /// Every file was read: each service, and the services it needs started before it.
    Read {
        files: Vec<String>,
        needs: BTreeMap<String, BTreeSet<String>>,
    },
    /// A file could not be used; why, naming it.
    Unusable(String),
}

/// The dependencies of a stack from its compose files, or `None` when its containers
/// carry Compose v2's label, which says them already.
pub fn compose_deps(stack: &Stack) -> Option<ComposeDeps> {
    if stack
        .containers()
        .any(|c| c.labels.contains_key(DEPENDS_ON_LABEL))
    {
        return None;
    }
    if stack.config_files.is_empty() {
        return Some(ComposeDeps::Unusable(format!(
            "Compose recorded no compose file for it (label {CONFIG_FILES_LABEL})"
        )));
    }
    let mut needs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &stack.config_files {
        // A relative path had no project folder to be joined to; holdfast's own folder
        // is not the stack's.
        if !Path::new(file).is_absolute() {
            return Some(ComposeDeps::Unusable(format!(
                "{file} is a relative path and Compose recorded no project folder"
            )));
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                return Some(ComposeDeps::Unusable(format!(
                    "{file} could not be read ({e}); holdfast must see the stack's folder at the same path"
                )));
            }
        };
        match parse_compose_needs(&text) {
            // Later files add to what earlier ones say, as Compose merges them.
            Ok(found) => {
                for (service, more) in found {
                    needs.entry(service).or_default().extend(more);
                }
            }
            Err(e) => {
                return Some(ComposeDeps::Unusable(format!(
                    "{file} is not a compose file holdfast can read ({e})"
                )));
            }
        }
    }
    Some(ComposeDeps::Read {
        files: stack.config_files.clone(),
        needs,
    })
}

/// Each service of a compose file and the services it needs started before it. A file
/// without `services` (and without `version`) is the version 1 format, where the
/// services are at the top.
pub fn parse_compose_needs(text: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    use serde_yaml_ng::Value;
    let doc = compose_document(text)?;
    let Some(services) = compose_services(&doc)? else {
        return Ok(BTreeMap::new());
    };
    let strings = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::Mapping(map)) => map
                .keys()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut out = BTreeMap::new();
    for (name, service) in services {
        let (Some(name), Some(_)) = (name.as_str(), service.as_mapping()) else {
            continue;
        };
        let mut needs: BTreeSet<String> = strings(service.get("depends_on")).into_iter().collect();
        // `links: [db:database]` names the service, then an alias.
        for link in strings(service.get("links")) {
            needs.extend(link.split(':').next().map(str::to_string));
        }
        // `volumes_from: [data:ro]` names a service; `container:x` a container.
        for from in strings(service.get("volumes_from")) {
            if !from.starts_with("container:") {
                needs.extend(from.split(':').next().map(str::to_string));
            }
        }
        if let Some(other) = service
            .get("network_mode")
            .and_then(Value::as_str)
            .and_then(|m| m.strip_prefix("service:"))
        {
            needs.insert(other.to_string());
        }
        needs.retain(|n| !n.is_empty());
        out.insert(name.to_string(), needs);
    }
    Ok(out)
}

/// A compose file as YAML, with its merge keys (`<<: *base`) applied.
pub fn compose_document(text: &str) -> Result<serde_yaml_ng::Value, String> {
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    doc.apply_merge().map_err(|e| e.to_string())?;
    Ok(doc)
}

/// The services of a compose document: `services`, or the top of a version 1 file (no
/// `services`, no `version`); `None` when it has none.
pub fn compose_services(
    doc: &serde_yaml_ng::Value,
) -> Result<Option<&serde_yaml_ng::Mapping>, String> {
    let services = match doc.get("services") {
        Some(services) => services,
        None if doc.get("version").is_none() => doc,
        None => return Ok(None),
    };
    match services.as_mapping() {
        Some(services) => Ok(Some(services)),
        None => Err("`services` is not a mapping".into()),
    }
}

/// Where (part of) a stop order came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "camelCase")]
pub enum OrderBasis {
    /// `consistency.stopOrder`, for the containers it names.
    StopOrder,
    /// Compose v2's depends_on labels.
    Labels { stack: String },
    /// The stack's compose files.
    ComposeFiles { stack: String, files: Vec<String> },
    /// No dependency among the containers stopped: by container name.
    Name { stack: Option<String> },
}

impl fmt::Display for OrderBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderBasis::StopOrder => write!(f, "from consistency.stopOrder"),
            OrderBasis::Labels { stack } => write!(f, "from depends_on labels (stack {stack})"),
            OrderBasis::ComposeFiles { stack, files } if files.len() == 1 => {
                write!(f, "from the compose file {} (stack {stack})", files[0])
            }
            OrderBasis::ComposeFiles { stack, files } => write!(
                f,
                "from the compose files {} (stack {stack})",
                files.join(", ")
            ),
            OrderBasis::Name { stack: Some(stack) } => write!(f, "by name (stack {stack})"),
            OrderBasis::Name { stack: None } => write!(f, "by name (containers in no stack)"),
        }
    }
}

/// Where a whole order came from, as one phrase: `from consistency.stopOrder, then from
/// the compose file … (stack shop)`.
pub fn describe(basis: &[OrderBasis]) -> String {
    let parts: Vec<String> = basis.iter().map(ToString::to_string).collect();
    match basis.first() {
        Some(OrderBasis::StopOrder) if parts.len() > 1 => {
            format!("{}, then {}", parts[0], parts[1..].join("; "))
        }
        _ => parts.join("; "),
    }
}

/// A stop order, with where it came from and what was wrong with its sources.
#[derive(Debug)]
pub struct Ordered<'a> {
    /// Containers in the order to stop them; they start in reverse.
    pub stop: Vec<&'a ContainerInfo>,
    pub basis: Vec<OrderBasis>,
    pub warnings: Vec<String>,
}

/// Where a container's dependencies come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source<'a> {
    Labels,
    Files(&'a [String]),
}

/// The services a container needs started before it, and where that was found.
fn needs<'a>(
    c: &ContainerInfo,
    compose: &'a BTreeMap<String, ComposeDeps>,
) -> Option<(Vec<String>, Source<'a>)> {
    if let Some(label) = c.labels.get(DEPENDS_ON_LABEL) {
        // `service:condition:restart`, comma-separated.
        let services = label
            .split(',')
            .filter_map(|d| d.split(':').next())
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect();
        return Some((services, Source::Labels));
    }
    match compose.get(c.project()?)? {
        ComposeDeps::Read { files, needs } => {
            let services = needs.get(c.service()?)?.iter().cloned().collect();
            Some((services, Source::Files(files)))
        }
        ComposeDeps::Unusable(_) => None,
    }
}

/// The order to stop `to_stop` in: `stated` first (`consistency.stopOrder`), then the
/// others dependents first, by name where nothing says.
pub fn stop_order<'a>(
    to_stop: &[&'a ContainerInfo],
    stated: &[String],
    compose: &BTreeMap<String, ComposeDeps>,
) -> Ordered<'a> {
    let mut by_deps = start_order(to_stop, |c| {
        needs(c, compose).map(|(n, _)| n).unwrap_or_default()
    });
    by_deps.reverse();

    let mut warnings = Vec::new();
    let mut stop: Vec<&ContainerInfo> = Vec::new();
    for name in stated {
        let named = |c: &&ContainerInfo| &c.name == name || c.service() == Some(name.as_str());
        if !to_stop.iter().any(named) {
            let names: Vec<&str> = by_deps.iter().map(|c| c.name.as_str()).collect();
            warnings.push(format!(
                "consistency.stopOrder names `{name}`, which is none of the containers this run stops ({}) nor their services",
                if names.is_empty() { "it stops none".to_string() } else { names.join(", ") }
            ));
        }
        for c in &by_deps {
            if named(c) && !stop.iter().any(|s| s.id == c.id) {
                stop.push(c);
            }
        }
    }
    let mut basis = Vec::new();
    if !stop.is_empty() {
        basis.push(OrderBasis::StopOrder);
    }
    let rest: Vec<&ContainerInfo> = by_deps
        .into_iter()
        .filter(|c| !stop.iter().any(|s| s.id == c.id))
        .collect();

    // Per stack, among the containers the stated order left: where their order came
    // from, and whether a compose file that could not be used cost it.
    let mut groups: BTreeMap<Option<&str>, Vec<&ContainerInfo>> = BTreeMap::new();
    for c in &rest {
        groups.entry(c.project()).or_default().push(c);
    }
    // Containers in no stack last.
    let mut groups: Vec<(Option<&str>, Vec<&ContainerInfo>)> = groups.into_iter().collect();
    let loose = usize::from(groups.first().is_some_and(|(s, _)| s.is_none()));
    groups.rotate_left(loose);
    for (stack, members) in groups {
        let services: BTreeSet<&str> = members.iter().filter_map(|c| c.service()).collect();
        let source = members.iter().find_map(|c| {
            let (needed, source) = needs(c, compose)?;
            needed
                .iter()
                .any(|n| services.contains(n.as_str()))
                .then_some(source)
        });
        let stack_name = stack.map(str::to_string);
        basis.push(match (source, stack_name) {
            (Some(Source::Labels), Some(stack)) => OrderBasis::Labels { stack },
            (Some(Source::Files(files)), Some(stack)) => OrderBasis::ComposeFiles {
                stack,
                files: files.to_vec(),
            },
            (_, stack) => OrderBasis::Name { stack },
        });
        if let (Some(stack), true) = (stack, members.len() > 1)
            && let Some(ComposeDeps::Unusable(why)) = compose.get(stack)
        {
            warnings.push(format!(
                    "the stop order of stack {stack} ignores its compose files, so it goes by name: {why}"
                ));
        }
    }
    stop.extend(rest);
    Ordered {
        stop,
        basis,
        warnings,
    }
}

/// Containers in the order they should start: a service after the services it needs
/// (within its own stack), otherwise by name.
fn start_order<'a>(
    containers: &[&'a ContainerInfo],
    needs: impl Fn(&ContainerInfo) -> Vec<String>,
) -> Vec<&'a ContainerInfo> {
    let mut remaining: Vec<&ContainerInfo> = containers.to_vec();
    remaining.sort_by(|a, b| a.name.cmp(&b.name));
    let mut started: BTreeSet<(Option<String>, String)> = BTreeSet::new();
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|c| {
            needs(c).iter().all(|d| {
                let in_set = remaining
                    .iter()
                    .any(|o| o.project() == c.project() && o.service() == Some(d.as_str()));
                !in_set || started.contains(&(c.project().map(str::to_string), d.clone()))
            })
        });
        // A dependency cycle cannot be ordered; take the rest by name.
        let next = remaining.remove(ready.unwrap_or(0));
        if let Some(service) = next.service() {
            started.insert((next.project().map(str::to_string), service.to_string()));
        }
        order.push(next);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::{PROJECT_LABEL, SERVICE_LABEL, WORKING_DIR_LABEL, group_stacks};

    fn container(project: Option<&str>, service: &str) -> ContainerInfo {
        let mut labels = BTreeMap::new();
        let name = match project {
            Some(project) => {
                labels.insert(PROJECT_LABEL.to_string(), project.to_string());
                labels.insert(SERVICE_LABEL.to_string(), service.to_string());
                format!("{project}_{service}_1")
            }
            None => service.to_string(),
        };
        ContainerInfo {
            id: format!("id-{name}"),
            name,
            image: "img".into(),
            state: "running".into(),
            labels,
            mounts: vec![],
        }
    }

    const SHOP: &str = "version: '2.4'
x-base: &base
  image: busybox
  depends_on: [cache]
services:
  postgres:
    image: postgres
  cache:
    image: redis
  app:
    <<: *base
    depends_on:
      - postgres
  web:
    image: nginx
    depends_on:
      app: {condition: service_healthy}
    links: ['app:backend']
";

    fn shop() -> Vec<ContainerInfo> {
        ["app", "postgres", "web"]
            .map(|s| container(Some("shop"), s))
            .to_vec()
    }

    fn names(ordered: &Ordered) -> Vec<String> {
        ordered.stop.iter().map(|c| c.name.clone()).collect()
    }

    fn read(text: &str) -> BTreeMap<String, ComposeDeps> {
        [(
            "shop".to_string(),
            ComposeDeps::Read {
                files: vec!["/srv/shop/docker-compose.yml".into()],
                needs: parse_compose_needs(text).unwrap(),
            },
        )]
        .into()
    }

    #[test]
    fn dependents_stop_first_whatever_the_source() {
        let all = shop();
        let refs: Vec<&ContainerInfo> = all.iter().collect();
        let from_file = OrderBasis::ComposeFiles {
            stack: "shop".into(),
            files: vec!["/srv/shop/docker-compose.yml".into()],
        };

        // Compose v1: from the compose file, list and mapping forms alike.
        let ordered = stop_order(&refs, &[], &read(SHOP));
        assert_eq!(
            names(&ordered),
            ["shop_web_1", "shop_app_1", "shop_postgres_1"]
        );
        assert_eq!(ordered.basis, [from_file]);
        assert!(ordered.warnings.is_empty(), "{:?}", ordered.warnings);
        assert_eq!(
            describe(&ordered.basis),
            "from the compose file /srv/shop/docker-compose.yml (stack shop)"
        );

        // Nothing says: by name, which stops the database before its app.
        let ordered = stop_order(&refs, &[], &BTreeMap::new());
        assert_eq!(
            names(&ordered),
            ["shop_web_1", "shop_postgres_1", "shop_app_1"]
        );
        assert_eq!(
            ordered.basis,
            [OrderBasis::Name {
                stack: Some("shop".into())
            }]
        );

        // A file that could not be read: by name, and said so.
        let unusable: BTreeMap<String, ComposeDeps> = [(
            "shop".to_string(),
            ComposeDeps::Unusable("/srv/shop/docker-compose.yml could not be read".into()),
        )]
        .into();
        let ordered = stop_order(&refs, &[], &unusable);
        assert_eq!(
            names(&ordered),
            ["shop_web_1", "shop_postgres_1", "shop_app_1"]
        );
        assert_eq!(
            ordered.warnings,
            [
                "the stop order of stack shop ignores its compose files, so it goes by name: /srv/shop/docker-compose.yml could not be read"
            ]
        );

        // Compose v2's labels (on every container, empty when it needs nothing) win over
        // the file.
        let mut labelled = shop();
        for (c, needs) in labelled
            .iter_mut()
            .zip(["web:service_started:false", "", ""])
        {
            c.labels.insert(DEPENDS_ON_LABEL.into(), needs.into());
        }
        let refs: Vec<&ContainerInfo> = labelled.iter().collect();
        let ordered = stop_order(&refs, &[], &read(SHOP));
        assert_eq!(
            names(&ordered),
            ["shop_app_1", "shop_web_1", "shop_postgres_1"]
        );
        assert_eq!(
            ordered.basis,
            [OrderBasis::Labels {
                stack: "shop".into()
            }]
        );
        assert_eq!(
            describe(&ordered.basis),
            "from depends_on labels (stack shop)"
        );
    }

    #[test]
    fn a_stated_order_comes_first_and_the_rest_follows_dependents_first() {
        let mut all = shop();
        all.push(container(None, "loose"));
        let refs: Vec<&ContainerInfo> = all.iter().collect();
        let compose = read(SHOP);

        let stated = ["postgres".to_string(), "nosuch".to_string()];
        let ordered = stop_order(&refs, &stated, &compose);
        assert_eq!(
            names(&ordered),
            ["shop_postgres_1", "shop_web_1", "shop_app_1", "loose"]
        );
        assert_eq!(
            describe(&ordered.basis),
            "from consistency.stopOrder, then from the compose file /srv/shop/docker-compose.yml (stack shop); by name (containers in no stack)"
        );
        assert_eq!(
            ordered.warnings,
            [
                "consistency.stopOrder names `nosuch`, which is none of the containers this run stops (shop_web_1, shop_app_1, shop_postgres_1, loose) nor their services"
            ]
        );

        // Container names do as well as service names, and naming all leaves no other
        // source; a service and its container named both stop once.
        let stated = ["loose", "shop_app_1", "postgres", "app", "web"].map(str::to_string);
        let ordered = stop_order(&refs, &stated, &compose);
        assert_eq!(
            names(&ordered),
            ["loose", "shop_app_1", "shop_postgres_1", "shop_web_1"]
        );
        assert_eq!(ordered.basis, [OrderBasis::StopOrder]);
        assert!(ordered.warnings.is_empty(), "{:?}", ordered.warnings);

        // With nothing left to order, a stack's unreadable file is no reason to warn.
        let unusable: BTreeMap<String, ComposeDeps> =
            [("shop".to_string(), ComposeDeps::Unusable("x".into()))].into();
        let stated = ["web", "app"].map(str::to_string);
        let ordered = stop_order(&refs, &stated, &unusable);
        assert_eq!(
            names(&ordered),
            ["shop_web_1", "shop_app_1", "shop_postgres_1", "loose"]
        );
        assert!(ordered.warnings.is_empty(), "{:?}", ordered.warnings);
    }

    #[test]
    fn compose_files_say_what_compose_starts_first() {
        let needs = parse_compose_needs(SHOP).unwrap();
        let of = |s: &str| -> Vec<&str> { needs[s].iter().map(String::as_str).collect() };
        // The service's own `depends_on` wins over the one its merge key brings, as in
        // any YAML merge.
        assert_eq!(of("app"), ["postgres"]);
        assert_eq!(of("web"), ["app"]);
        assert!(of("postgres").is_empty());

        let other = "services:
  a:
    image: x
    volumes_from: ['data:ro', 'container:outside']
    network_mode: 'service:vpn'
  b:
    image: x
    <<: {depends_on: {c: {condition: service_started}}}
";
        let needs = parse_compose_needs(other).unwrap();
        assert_eq!(needs["a"], ["data", "vpn"].map(str::to_string).into());
        assert_eq!(needs["b"], ["c".to_string()].into());

        // The version 1 format: services at the top, ordered by links.
        let v1 = "db:\n  image: postgres\nweb:\n  image: x\n  links: [db]\n";
        assert_eq!(
            parse_compose_needs(v1).unwrap()["web"],
            ["db".to_string()].into()
        );
        assert!(parse_compose_needs("services: [a, b]\n").is_err());
        assert!(parse_compose_needs("services:\n  a: [\n").is_err());
    }

    #[test]
    fn compose_deps_reads_every_file_or_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("docker-compose.yml");
        let extra = dir.path().join("docker-compose.override.yml");
        std::fs::write(&base, "services:\n  app: {depends_on: [db]}\n  db: {}\n").unwrap();
        std::fs::write(&extra, "services:\n  app: {depends_on: [cache]}\n").unwrap();
        let stack = |files: &str| {
            let mut c = container(Some("shop"), "app");
            c.labels.insert(CONFIG_FILES_LABEL.into(), files.into());
            c.labels.insert(
                WORKING_DIR_LABEL.into(),
                dir.path().to_string_lossy().into_owned(),
            );
            group_stacks(vec![c]).remove(0)
        };
        let files = format!("{},{}", base.display(), extra.display());
        match compose_deps(&stack(&files)) {
            Some(ComposeDeps::Read { files, needs }) => {
                assert_eq!(files.len(), 2);
                assert_eq!(needs["app"], ["cache", "db"].map(str::to_string).into());
            }
            other => panic!("{other:?}"),
        }
        let missing = dir.path().join("gone.yml");
        match compose_deps(&stack(&missing.to_string_lossy())) {
            Some(ComposeDeps::Unusable(why)) => {
                assert!(
                    why.starts_with(&format!("{} could not be read", missing.display())),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&extra, "services: [\n").unwrap();
        match compose_deps(&stack(&files)) {
            Some(ComposeDeps::Unusable(why)) => assert!(
                why.starts_with(&format!("{} is not a compose file", extra.display())),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        // Compose v2 says it in labels: the files are not read.
        let mut labelled = stack(&missing.to_string_lossy());
        for list in labelled.services.values_mut() {
            for c in list {
                c.labels.insert(DEPENDS_ON_LABEL.into(), String::new());
            }
        }
        assert_eq!(compose_deps(&labelled), None);
    }
}
