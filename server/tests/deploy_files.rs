//! The deploy files in `assets/deploy/` exist and name what the server relies on. No YAML
//! parser is in the dependency set, so these are line checks on the text; CI lints the
//! Dockerfile with hadolint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

const DOCKERFILE: &str = include_str!("../../assets/deploy/Dockerfile");
const FLEET: &str = include_str!("../../assets/deploy/fleet.yaml");
const ALLOCATION: &str = include_str!("../../assets/deploy/gameserverallocation.yaml");

/// The lines of `text` without comments, trimmed.
fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn has(text: &str, line: &str) -> bool {
    lines(text).contains(&line)
}

#[test]
fn dockerfile_builds_the_server_and_runs_it_unprivileged_with_agones() {
    for line in [
        "FROM rust:1.89-bookworm AS builder",
        "cargo build --release -p tickwire-server --locked \\",
        "FROM debian:bookworm-slim",
        "USER 10001:10001",
        "EXPOSE 8080/tcp 4433/udp",
        r#"ENTRYPOINT ["tickwire-server"]"#,
        r#"CMD ["--listen","0.0.0.0:8080","--quic","0.0.0.0:4433","--agones"]"#,
    ] {
        assert!(has(DOCKERFILE, line), "Dockerfile lacks {line:?}");
    }
}

#[test]
fn fleet_declares_the_counter_the_list_and_the_ports() {
    let docs: Vec<&str> = FLEET
        .split("\n---\n")
        .filter(|d| d.contains("kind:"))
        .collect();
    assert_eq!(docs.len(), 2);
    let (fleet, autoscaler) = (docs[0], docs[1]);
    for line in [
        "apiVersion: agones.dev/v1",
        "kind: Fleet",
        "counters:",
        "rooms:",
        "capacity: 100",
        "lists:",
        "players:",
        "periodSeconds: 5",
        "containerPort: 8080",
        "protocol: TCP",
        "containerPort: 4433",
        "protocol: UDP",
        "portPolicy: Dynamic",
        "- name: RUST_LOG",
    ] {
        assert!(has(fleet, line), "Fleet lacks {line:?}");
    }
    for line in [
        "apiVersion: autoscaling.agones.dev/v1",
        "kind: FleetAutoscaler",
        "fleetName: tickwire",
        "type: Counter",
        "counter:",
        "key: rooms",
    ] {
        assert!(has(autoscaler, line), "FleetAutoscaler lacks {line:?}");
    }
    for key in ["bufferSize:", "minCapacity:", "maxCapacity:"] {
        assert!(
            lines(autoscaler).iter().any(|l| l.starts_with(key)),
            "FleetAutoscaler lacks {key}"
        );
    }
}

#[test]
fn allocation_picks_a_server_with_a_free_room_and_leaves_the_counter_to_it() {
    for line in [
        "apiVersion: allocation.agones.dev/v1",
        "kind: GameServerAllocation",
        "agones.dev/fleet: tickwire",
        "minAvailable: 1",
        "- type: Counter",
        "key: rooms",
    ] {
        assert!(has(ALLOCATION, line), "GameServerAllocation lacks {line:?}");
    }
    // The server owns the rooms Counter; an allocation that incremented it would be undone.
    assert!(!has(ALLOCATION, "action: Increment"));
}
