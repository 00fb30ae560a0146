//! A cluster of Ferry nodes runs on NATS JetStream (issue 22). What every
//! cluster test stands on comes first: a JetStream cluster of three
//! servers on loopback, formed, with each write synced to disk before it
//! is acknowledged — the setting without which an acknowledged deploy or
//! write could be lost on a crash.

use ferry_store::testing::NatsCluster;

#[test]
fn a_jetstream_cluster_of_three_forms_and_syncs_every_write() {
    let cluster = NatsCluster::start(3);
    let mut leaders = Vec::new();
    for node in &cluster.nodes {
        let jsz = node
            .jetstream()
            .unwrap_or_else(|| panic!("{} does not answer /jsz", node.name));
        assert_eq!(
            jsz["config"]["sync_always"], true,
            "{}: writes not synced before they are acknowledged: {jsz}",
            node.name
        );
        assert_eq!(
            jsz["meta_cluster"]["cluster_size"], 3,
            "{}: {jsz}",
            node.name
        );
        leaders.push(jsz["meta_cluster"]["leader"].as_str().unwrap().to_owned());
    }
    // One meta leader, the same for all, and one of the three.
    assert!(leaders.windows(2).all(|w| w[0] == w[1]), "{leaders:?}");
    assert!(
        cluster.nodes.iter().any(|n| n.name == leaders[0]),
        "{leaders:?}"
    );
    assert_eq!(cluster.urls().split(',').count(), 3);
}
