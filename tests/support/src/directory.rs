//! The behaviour every room directory (`tickrelay::cluster::Directory`) must have,
//! as checks on two nodes' views of one directory, "a" and "b" (see [`node`]), and a
//! way to let time pass. `tests/relay/cluster.rs` runs them on the memory directory
//! (a manual clock) and on Redis (real time, short leases).

use std::time::Duration;

use tickrelay::cluster::{Claim, Directory, Node, RoomEntry};
use tickrelay::engine::listing::{ListingState, Metadata};
use tickrelay::engine::room::user_digest;

/// A room entry of type "arena" with room for 8.
pub fn entry(room: &str, members: u32) -> RoomEntry {
    RoomEntry {
        room: room.into(),
        room_type: "arena".into(),
        node: String::new(),
        members,
        max_members: 8,
        listing: ListingState::default(),
        banned: Vec::new(),
        unsettled_keys: Default::default(),
    }
}

/// The same with metadata `mode` = `mode`, locked or not.
pub fn listed(room: &str, members: u32, mode: &str, locked: bool) -> RoomEntry {
    let mut listed = entry(room, members);
    listed.listing.metadata.insert("mode".into(), mode.into());
    listed.listing.locked = locked;
    listed
}

/// Node `id` at `https://id.test/ws`.
pub fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        url: format!("wss://{id}.test/ws"),
    }
}

/// One owner per room; the others learn who owns it and where it is.
pub async fn a_room_has_one_owner<D: Directory>(a: &D, b: &D) {
    assert_eq!(b.locate("r1").await.unwrap(), None, "nobody holds it yet");
    assert_eq!(a.claim(&entry("r1", 0)).await.unwrap(), Claim::Ours);
    assert_eq!(b.locate("r1").await.unwrap().as_deref(), Some("a"));
    assert_eq!(
        a.claim(&entry("r1", 0)).await.unwrap(),
        Claim::Ours,
        "claiming again keeps it"
    );
    let theirs = Claim::Theirs {
        node: "a".into(),
        url: Some("wss://a.test/ws".into()),
    };
    assert_eq!(b.claim(&entry("r1", 0)).await.unwrap(), theirs);
    assert_eq!(
        b.renew(&[entry("r1", 3)]).await.unwrap(),
        vec!["r1".to_string()],
        "not b's to renew"
    );
    b.release("r1").await.unwrap();
    assert_eq!(b.claim(&entry("r1", 0)).await.unwrap(), theirs, "not b's to release");
    a.release("r1").await.unwrap();
    assert_eq!(
        b.claim(&entry("r1", 0)).await.unwrap(),
        Claim::Ours,
        "released: free to take"
    );
}

/// Leases run out unless renewed; then another node takes the room, and the old
/// owner learns at its next renewal that it lost it.
pub async fn leases_lapse_unless_renewed<D: Directory>(a: &D, b: &D, lease: Duration, elapse: impl AsyncFn(Duration)) {
    assert_eq!(a.claim(&entry("r2", 1)).await.unwrap(), Claim::Ours);
    // r3 is never renewed: it lapses with nobody taking it.
    assert_eq!(a.claim(&entry("r3", 1)).await.unwrap(), Claim::Ours);
    // Renewed well within the lease (a busy machine may be late by a few hundred ms),
    // for longer than one.
    for _ in 0..5 {
        elapse(lease / 4).await;
        assert_eq!(a.renew(&[entry("r2", 2)]).await.unwrap(), Vec::<String>::new());
    }
    assert!(matches!(b.claim(&entry("r2", 0)).await.unwrap(), Claim::Theirs { .. }));
    // (Waited out, a lease lapses on time: a late wait only waits longer.)
    elapse(lease + lease / 4).await;
    assert_eq!(a.locate("r2").await.unwrap(), None, "a's lease lapsed");
    assert_eq!(b.claim(&entry("r2", 0)).await.unwrap(), Claim::Ours, "free to take");
    let lost = a.renew(&[entry("r2", 2), entry("r3", 1)]).await.unwrap();
    assert_eq!(lost, ["r2", "r3"], "r3 lapsed too, though nobody took it");
    assert_eq!(
        a.claim(&entry("r2", 0)).await.unwrap(),
        Claim::Theirs {
            node: "b".into(),
            url: Some("wss://b.test/ws".into())
        }
    );
}

/// Listings page in id order, carry the renewed member counts, and drop a room
/// one lease period after its owner stopped renewing.
pub async fn listings_page_and_expire<D: Directory>(a: &D, b: &D, lease: Duration, elapse: impl AsyncFn(Duration)) {
    assert_eq!(
        a.list("", 10).await.unwrap(),
        (vec![], false),
        "an empty directory lists nothing"
    );
    for room in ["l1", "l2", "l3"] {
        assert_eq!(a.claim(&entry(room, 0)).await.unwrap(), Claim::Ours);
    }
    assert_eq!(b.claim(&entry("l4", 0)).await.unwrap(), Claim::Ours);
    a.renew(&[entry("l1", 5)]).await.unwrap();
    let (first, more) = b.list("l", 2).await.unwrap();
    assert!(more);
    assert_eq!(
        first
            .iter()
            .map(|e| (&*e.room, e.members, &*e.node))
            .collect::<Vec<_>>(),
        [("l1", 5, "a"), ("l2", 0, "a")]
    );
    let (second, more) = b.list("l2", 10).await.unwrap();
    assert!(!more);
    assert_eq!(second.iter().map(|e| &*e.room).collect::<Vec<_>>(), ["l3", "l4"]);
    // a stops renewing; b goes on, for longer than a lease.
    for _ in 0..5 {
        elapse(lease / 4).await;
        b.renew(&[entry("l4", 1)]).await.unwrap();
    }
    let (left, _) = b.list("l", 10).await.unwrap();
    assert_eq!(
        left.iter().map(|e| (&*e.room, e.members)).collect::<Vec<_>>(),
        [("l4", 1)]
    );
    // A lapsed room claimed again is listed again.
    assert_eq!(b.claim(&entry("l1", 0)).await.unwrap(), Claim::Ours);
    let (again, _) = a.list("", 10).await.unwrap();
    let again: Vec<_> = again.iter().map(|e| (&*e.room, &*e.node)).collect();
    assert_eq!(again, [("l1", "b"), ("l4", "b")]);
}

/// Quick joins' candidates: the rooms of a type open at their owners' last renewals
/// (not locked, not private, not full), fullest first, with the listings the owners
/// renewed; a room leaves them when it closes or its lease lapses. Listings carry the
/// listings too.
pub async fn open_rooms_are_the_fullest_open_ones<D: Directory>(
    a: &D,
    b: &D,
    lease: Duration,
    elapse: impl AsyncFn(Duration),
) {
    let ids = |rooms: Vec<RoomEntry>| rooms.into_iter().map(|r| r.room).collect::<Vec<_>>();
    let mut private = entry("o-private", 0);
    private.listing.private = true;
    for room in [listed("o1", 0, "ctf", false), listed("o2", 0, "ctf", false), private] {
        assert_eq!(a.claim(&room).await.unwrap(), Claim::Ours);
    }
    assert_eq!(b.claim(&listed("o3", 0, "dm", false)).await.unwrap(), Claim::Ours);
    assert_eq!(ids(a.open_rooms("duel", 10).await.unwrap()), Vec::<String>::new());
    let open = ids(a.open_rooms("arena", 10).await.unwrap());
    assert_eq!(open.len(), 3, "new rooms are open at once: {open:?}");
    assert!(!open.contains(&"o-private".to_string()));
    // Renewed: o2 fuller than o3 and banning ann, o1 locked.
    let mut banning = listed("o2", 6, "ctf", false);
    banning.banned = vec![user_digest("ann")];
    a.renew(&[listed("o1", 5, "ctf", true), banning]).await.unwrap();
    b.renew(&[listed("o3", 2, "dm", false)]).await.unwrap();
    // The owner claiming again (a redirected member's join) keeps the renewed entry.
    assert_eq!(a.claim(&entry("o2", 0)).await.unwrap(), Claim::Ours);
    let open = b.open_rooms("arena", 10).await.unwrap();
    assert_eq!(ids(open.clone()), ["o2", "o3"]);
    assert_eq!((open[0].members, open[0].node.as_str()), (6, "a"));
    assert_eq!(open[0].listing.metadata["mode"], "ctf");
    assert!(open[0].bans("ann") && !open[0].bans("bob") && !open[1].bans("ann"));
    assert_eq!(
        ids(b.open_rooms("arena", 1).await.unwrap()),
        ["o2"],
        "the fullest first"
    );
    // Their ids first, then their entries a few at a time (as they are now).
    let open = b.open_room_ids("arena", &Metadata::new(), 10).await.unwrap();
    assert_eq!(open, ["o2", "o3"]);
    assert_eq!(ids(b.open_room_entries("arena", &open[1..]).await.unwrap()), ["o3"]);
    // By metadata: only rooms holding every entry asked for.
    let filters = |entries: &[(&str, &str)]| -> Metadata {
        (entries.iter()).map(|&(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let matching = async |entries: &[(&str, &str)]| b.open_room_ids("arena", &filters(entries), 10).await.unwrap();
    assert_eq!(matching(&[("mode", "ctf")]).await, ["o2"], "o1 is locked");
    assert_eq!(matching(&[("mode", "dm")]).await, ["o3"]);
    assert_eq!(
        matching(&[("mode", "ctf"), ("map", "dust")]).await,
        Vec::<String>::new()
    );
    assert_eq!(matching(&[("mode", "tdm")]).await, Vec::<String>::new());
    // Metadata changed by a renewal: the room is found under its new entries only.
    let mut moved = listed("o2", 6, "dm", false);
    moved.listing.metadata.insert("map".into(), "dust".into());
    a.renew(&[listed("o1", 5, "ctf", true), moved]).await.unwrap();
    assert_eq!(matching(&[("mode", "ctf")]).await, Vec::<String>::new());
    assert_eq!(matching(&[("mode", "dm")]).await, ["o2", "o3"], "the fullest first");
    assert_eq!(matching(&[("map", "dust"), ("mode", "dm")]).await, ["o2"]);
    assert_eq!(matching(&[("mode", "dm")]).await.len(), 2, "read again: the same");
    let (listing, _) = b.list("o0", 1).await.unwrap();
    assert_eq!((listing[0].room.as_str(), listing[0].listing.locked), ("o1", true));
    // Full rooms are not open; rooms leave when released; a ban lifted is gone.
    a.renew(&[listed("o1", 5, "ctf", false), listed("o2", 8, "ctf", false)])
        .await
        .unwrap();
    assert_eq!(matching(&[("mode", "ctf")]).await, ["o1"], "o2 is full");
    let (listing, _) = b.list("o1", 1).await.unwrap();
    assert_eq!((listing[0].room.as_str(), listing[0].bans("ann")), ("o2", false));
    b.release("o3").await.unwrap();
    assert_eq!(ids(a.open_rooms("arena", 10).await.unwrap()), ["o1"]);
    assert_eq!(matching(&[("mode", "dm")]).await, Vec::<String>::new());
    assert_eq!(a.node_url("b").await.unwrap().as_deref(), Some("wss://b.test/ws"));
    // a stops renewing: its rooms and its URL lapse.
    elapse(lease + lease / 4).await;
    assert_eq!(b.open_rooms("arena", 10).await.unwrap(), vec![]);
    assert_eq!(b.node_url("a").await.unwrap(), None);
}

/// Node loads are the members of each node's rooms at its last renewal (rooms it no
/// longer holds not counted), fewest first, and a node whose own lease lapsed is
/// not among them.
pub async fn node_loads_follow_renewals<D: Directory>(a: &D, b: &D, lease: Duration, elapse: impl AsyncFn(Duration)) {
    assert_eq!(a.claim(&entry("n1", 0)).await.unwrap(), Claim::Ours);
    assert_eq!(a.claim(&entry("n2", 0)).await.unwrap(), Claim::Ours);
    assert_eq!(b.claim(&entry("n3", 0)).await.unwrap(), Claim::Ours);
    a.renew(&[entry("n1", 5), entry("n2", 4)]).await.unwrap();
    // n1 is a's, not b's: b's load counts only n3.
    b.renew(&[entry("n3", 2), entry("n1", 7)]).await.unwrap();
    let loads = |loads: Vec<(Node, u64)>| loads.into_iter().map(|(n, l)| (n.id, l)).collect::<Vec<_>>();
    let expected = vec![("b".to_string(), 2), ("a".to_string(), 9)];
    assert_eq!(loads(a.node_loads().await.unwrap()), expected);
    assert_eq!(loads(b.node_loads().await.unwrap()), expected);
    let (b_node, _) = &a.node_loads().await.unwrap()[0];
    assert_eq!(b_node, &node("b"), "with the node's URL");
    // Only a renews from here, for longer than a lease: b's lease lapses.
    for _ in 0..5 {
        elapse(lease / 4).await;
        a.renew(&[entry("n1", 1), entry("n2", 1)]).await.unwrap();
    }
    assert_eq!(loads(b.node_loads().await.unwrap()), vec![("a".to_string(), 2)]);
    // A placement counts one member on the node until its next renewal; a node that
    // is gone is not brought back by one.
    b.count_placement("a").await.unwrap();
    b.count_placement("a").await.unwrap();
    b.count_placement("b").await.unwrap();
    assert_eq!(loads(a.node_loads().await.unwrap()), vec![("a".to_string(), 4)]);
    a.renew(&[entry("n1", 1), entry("n2", 1)]).await.unwrap();
    assert_eq!(loads(a.node_loads().await.unwrap()), vec![("a".to_string(), 2)]);
}
