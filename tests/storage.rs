//! Storage guarantees on both backends: idempotent appends, concurrent writers
//! (as two server instances on one database), and compaction that never drops
//! a change it did not see.

mod common;

use std::collections::HashSet;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Change, ChangeHash, ReadDoc, ROOT};
use common::TestDb;
use fieldsync_server::db::Db;
use fieldsync_server::storage::{self, DocWrite, NewChange};

fn change_rows(doc: &mut AutoCommit, since: &[ChangeHash]) -> Vec<NewChange> {
    doc.get_changes(since)
        .into_iter()
        .map(|c: Change| NewChange {
            hash: c.hash(),
            bytes: c.raw_bytes().to_vec(),
        })
        .collect()
}

fn write(doc_id: &str, changes: Vec<NewChange>) -> Vec<DocWrite> {
    vec![DocWrite {
        doc_id: doc_id.into(),
        changes,
        quarantined: vec![],
        projection: None,
    }]
}

async fn appends_are_idempotent_and_concurrent_writers_are_harmless(db: TestDb) {
    let one = Db::open(&db.url, 4).unwrap();
    let two = Db::open(&db.url, 4).unwrap(); // a second "instance"
    let mut doc = AutoCommit::new();
    for i in 0..40 {
        doc.put(ROOT, format!("k{i}"), i).unwrap();
        doc.commit();
    }
    let all = change_rows(&mut doc, &[]);
    assert_eq!(all.len(), 40);

    // Both instances write overlapping halves at the same time, twice.
    let (a, b) = (all[..30].to_vec(), all[10..].to_vec());
    let t1 = std::thread::spawn({
        let one = one.clone();
        move || {
            (0..2)
                .map(|_| {
                    one.run_blocking(|c| storage::append_changes(c, &write("d1", a.clone())))
                        .unwrap()
                })
                .sum::<usize>()
        }
    });
    let t2 = std::thread::spawn({
        let two = two.clone();
        move || {
            (0..2)
                .map(|_| {
                    two.run_blocking(|c| storage::append_changes(c, &write("d1", b.clone())))
                        .unwrap()
                })
                .sum::<usize>()
        }
    });
    let inserted = t1.join().unwrap() + t2.join().unwrap();
    assert_eq!(inserted, 40, "each change stored exactly once");

    let stored = one.run_blocking(|c| storage::load(c, "d1")).unwrap();
    assert_eq!(stored.changes.len(), 40);
    let loaded = stored.materialize().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
    assert!(one
        .run_blocking(|c| storage::load(c, "other"))
        .unwrap()
        .is_empty());
}

async fn compaction_never_drops_changes_it_did_not_see(db: TestDb) {
    let db = Db::open(&db.url, 4).unwrap();
    // A base change and two concurrent branches, as two instances would see them.
    let mut base = AutoCommit::new();
    base.put(ROOT, "ticket_no", "T-1").unwrap();
    base.commit();
    let mut x = base.fork();
    x.put(ROOT, "visit", "x").unwrap();
    x.commit();
    let mut y = base.fork();
    y.put(ROOT, "part", "y").unwrap();
    y.commit();

    let mut rows = change_rows(&mut x, &[]);
    rows.extend(change_rows(&mut y, &base.get_heads()));
    db.run_blocking(|c| storage::append_changes(c, &write("d2", rows)))
        .unwrap();

    // Instance 1 only knows base + x; instance 2 only base + y.
    for branch in [&mut x, &mut y] {
        let known: HashSet<ChangeHash> = branch.get_changes(&[]).iter().map(|c| c.hash()).collect();
        let saved = branch.save();
        let heads = branch.get_heads();
        db.run_blocking(|c| storage::write_snapshot(c, "d2", &saved, &heads, &known))
            .unwrap();
    }

    let stored = db.run_blocking(|c| storage::load(c, "d2")).unwrap();
    assert_eq!(
        stored.snapshots.len(),
        2,
        "neither snapshot covers the other"
    );
    assert!(
        stored.changes.is_empty(),
        "every loose change is inside some snapshot"
    );
    let doc = stored.materialize().unwrap();
    let mut expected = x.fork();
    expected.merge(&mut y).unwrap();
    assert_eq!(doc.get_heads(), expected.get_heads());
    assert!(doc.get(ROOT, "visit").unwrap().is_some() && doc.get(ROOT, "part").unwrap().is_some());

    // A full compaction folds both snapshots into one.
    let known: HashSet<ChangeHash> = expected.get_changes(&[]).iter().map(|c| c.hash()).collect();
    let (saved, heads) = (expected.save(), expected.get_heads());
    let r = db
        .run_blocking(|c| storage::write_snapshot(c, "d2", &saved, &heads, &known))
        .unwrap();
    assert_eq!(r.snapshots_removed, 2);
    let stored = db.run_blocking(|c| storage::load(c, "d2")).unwrap();
    assert_eq!(stored.snapshots.len(), 1);
    assert_eq!(
        stored.materialize().unwrap().get_heads(),
        expected.get_heads()
    );
}

async fn storage_id_is_created_once(db: TestDb) {
    let db = Db::open(&db.url, 2).unwrap();
    let first = db
        .run_blocking(|c| storage::meta_get_or_init(c, "storage_id", "a"))
        .unwrap();
    let second = db
        .run_blocking(|c| storage::meta_get_or_init(c, "storage_id", "b"))
        .unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("a", "a"));
}

on_both_backends!(
    appends_are_idempotent_and_concurrent_writers_are_harmless,
    compaction_never_drops_changes_it_did_not_see,
    storage_id_is_created_once,
);
