//! Proves the test environment: a real Compose stack comes up, holdfast finds it through
//! the Docker API by its compose labels, and it goes away again.

mod common;

use common::{ComposeStack, crate_root, docker_available};
use holdfast::docker::MountInfo;
use holdfast::docker::engine::Engine;

#[tokio::test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
async fn finds_a_real_compose_stack_by_its_labels() {
    if !docker_available() {
        return;
    }
    let project = format!("hfenv{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    let engine = Engine::connect(None).await.expect("connect to Docker");
    assert!(!engine.api_version().is_empty());

    let stacks = engine.stacks().await.expect("list stacks");
    let found = stacks
        .iter()
        .find(|s| s.name == project)
        .unwrap_or_else(|| {
            panic!(
                "stack {project} not among {:?}",
                stacks.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });

    let services: Vec<&str> = found.services.keys().map(String::as_str).collect();
    assert_eq!(
        services,
        ["db", "mariadb", "redis", "sqlite", "web", "worker"]
    );
    assert!(
        found.containers().all(|c| c.is_running()),
        "{:#?}",
        found.containers().collect::<Vec<_>>()
    );

    let demo_dir = crate_root().join("examples/compose/demo");
    let working_dir = found.working_dir.as_deref().expect("working dir label");
    assert_eq!(
        std::fs::canonicalize(working_dir).unwrap(),
        std::fs::canonicalize(&demo_dir).unwrap()
    );
    assert!(
        found
            .config_files
            .iter()
            .any(|f| f.ends_with("docker-compose.yml")),
        "{:?}",
        found.config_files
    );

    let volumes = found.volume_names();
    for volume in [
        "web-data",
        "db-data",
        "mariadb-data",
        "redis-data",
        "sqlite-data",
    ] {
        assert!(
            volumes.contains(&format!("{project}_{volume}")),
            "{volume} missing from {volumes:?}"
        );
    }
    let web = &found.services["web"][0];
    assert_eq!(
        web.labels.get("holdfast.dev/backup").map(String::as_str),
        Some("true")
    );
    let config_bind = web.mounts.iter().find_map(|m| match m {
        MountInfo::Bind {
            source,
            destination,
            read_write,
        } if destination == "/etc/demo" => Some((source, *read_write)),
        _ => None,
    });
    let (source, read_write) = config_bind.expect("web bind-mounts ./config at /etc/demo");
    assert!(source.ends_with("examples/compose/demo/config"), "{source}");
    assert!(!read_write);

    let all_volumes = engine.volumes().await.expect("list volumes");
    let db_mountpoint = &all_volumes[&format!("{project}_db-data")];
    assert!(db_mountpoint.ends_with("/_data"), "{db_mountpoint}");

    // Selecting by label finds the labelled container only.
    let labelled = engine
        .containers(Some("holdfast.dev/backup=true"))
        .await
        .unwrap();
    assert!(labelled.iter().any(|c| c.id == web.id));
    assert!(
        labelled
            .iter()
            .all(|c| c.project() != Some(project.as_str()) || c.service() == Some("web"))
    );

    drop(stack);
    let after = engine.stacks().await.expect("list stacks");
    assert!(
        after.iter().all(|s| s.name != project),
        "stack still there after down"
    );
    let volumes_after = engine.volumes().await.unwrap();
    assert!(!volumes_after.contains_key(&format!("{project}_db-data")));
}

#[tokio::test]
async fn an_unreachable_engine_is_a_clear_error() {
    let err = Engine::connect(Some("unix:///nonexistent/docker.sock"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("connecting to Docker at unix:///nonexistent/docker.sock"),
        "{text}"
    );
}
