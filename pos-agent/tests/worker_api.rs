//! Store workers and managers at a terminal with the hub unreachable:
//! sign-in with a PIN from the roster, the worker's view of today,
//! claiming group tasks, notifications, the manager's actions (assign, new
//! lists and tasks, conflicts and their resolution), and all of it still
//! there after a restart. Every refusal is a 4xx that says what to fix and
//! writes nothing.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{seed_doc, seed_list, seed_roster, Local};
use engine::document::instance;
use engine::ids::{DocumentId, EventId, TaskId};
use engine::model::{
    Assignee, CreatedBy, InstanceContent, ListMeta, Priority, Status, StatusUpdate, TaskSpec,
};
use serde_json::{json, Value};

/// The store's time zone: one where it is now about noon, so every time the
/// fixture sets (20 minutes ago to 3 hours ahead) falls on the same local
/// day whenever the suite runs. A fixed zone made the "today" view flip to
/// the next day for an hour each night (CI failed at 23:0x UTC in Berlin).
/// `Etc/GMT-N` is UTC+N (POSIX signs), without daylight saving.
fn tz() -> &'static str {
    static ZONE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ZONE.get_or_init(|| {
        use chrono::Timelike;
        let east = (12 - Utc::now().hour() as i32).rem_euclid(24);
        let east = if east > 12 { east - 24 } else { east };
        match east {
            0 => "Etc/GMT".to_owned(),
            e if e > 0 => format!("Etc/GMT-{e}"),
            e => format!("Etc/GMT+{}", -e),
        }
    })
}

fn id(n: u128) -> TaskId {
    TaskId(uuid::Uuid::from_u128(n))
}

fn task(n: u128, title: &str, due: Option<DateTime<Utc>>, to: &str) -> TaskSpec {
    TaskSpec {
        id: id(n),
        title: title.into(),
        description: format!("How to: {title}"),
        start: None,
        due,
        priority: Priority::Normal,
        link: Some("pos:tender-declaration".parse().unwrap()),
        assignee: Some(to.parse().unwrap()),
        created_by: CreatedBy::Hq,
        position: n as i64,
    }
}

fn list(n: u128, name: &str, tasks: Vec<TaskSpec>) -> InstanceContent {
    let today = Utc::now()
        .with_timezone(&tz().parse::<chrono_tz::Tz>().unwrap())
        .date_naive();
    InstanceContent {
        id: DocumentId(uuid::Uuid::from_u128(n)),
        meta: ListMeta {
            store: common::store(),
            name: name.into(),
            template: None,
            date: today,
            time_zone: tz().into(),
            created_by: CreatedBy::Hq,
        },
        tasks,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    l: Local,
    closing: InstanceContent,
    delivery: InstanceContent,
}

/// The task whose status and assignee two other terminals changed at once
/// while offline.
const DISPUTED: u128 = 6;

/// Roster: Ana and Mia close (Mia manages), Bo is a cashier, Cy has no
/// PIN yet. Two lists for today; the delivery list holds a status conflict
/// and an assignee conflict made on two other terminals.
fn seed(dir: &std::path::Path) -> (InstanceContent, InstanceContent) {
    let now = Utc::now();
    seed_roster(
        dir,
        &[
            ("w-1", "Ana", "cashier", &["closers"], Some("1234")),
            ("w-2", "Bo", "cashier", &[], Some("2345")),
            ("m-1", "Mia", "manager", &["closers"], Some("9999")),
            ("w-3", "Cy", "cashier", &[], None),
        ],
    );
    let closing = list(
        1,
        "Closing",
        vec![
            task(
                1,
                "Count the till",
                Some(now + Duration::minutes(10)),
                "worker:w-1",
            ),
            task(
                2,
                "Clean the coffee machine",
                Some(now - Duration::minutes(20)),
                "group:closers",
            ),
            task(
                3,
                "Lock the back door",
                Some(now + Duration::hours(3)),
                "worker:w-2",
            ),
            task(
                4,
                "Restock bags",
                Some(now + Duration::minutes(60)),
                "group:closers",
            ),
            task(5, "Wipe counters", None, "group:floor"),
        ],
    );
    let delivery = list(
        2,
        "Delivery",
        vec![task(
            DISPUTED,
            "Receive pallet",
            Some(now + Duration::minutes(5)),
            "worker:w-1",
        )],
    );
    seed_list(dir, &closing);
    let base = instance::create(&delivery, automerge::ActorId::random()).unwrap();
    let mut a = base.fork();
    a.set_actor(automerge::ActorId::random());
    let mut b = base.fork();
    b.set_actor(automerge::ActorId::random());
    let update = |n: u128, status, worker: &str, terminal: &str| StatusUpdate {
        id: EventId(uuid::Uuid::from_u128(n)),
        task: id(DISPUTED),
        status,
        worker: worker.parse().unwrap(),
        terminal: terminal.parse().unwrap(),
        note: None,
    };
    let ms = now.timestamp_millis() - 60_000;
    instance::record_status(&mut a, &update(100, Status::InProgress, "w-1", "pos-2"), ms).unwrap();
    instance::record_status(&mut b, &update(101, Status::Completed, "w-2", "pos-3"), ms).unwrap();
    let w2: Assignee = "worker:w-2".parse().unwrap();
    let closers: Assignee = "group:closers".parse().unwrap();
    instance::set_assignee(&mut a, id(DISPUTED), Some(&w2), ms).unwrap();
    instance::set_assignee(&mut b, id(DISPUTED), Some(&closers), ms).unwrap();
    a.merge(&mut b).unwrap();
    seed_doc(dir, delivery.id, &a);
    (closing, delivery)
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (closing, delivery) = seed(dir.path());
    let l = Local::start(dir.path()).await;
    Fixture {
        _dir: dir,
        l,
        closing,
        delivery,
    }
}

fn task_ids(lists: &Value) -> Vec<Vec<u128>> {
    lists
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    t["task"]
                        .as_str()
                        .unwrap()
                        .parse::<uuid::Uuid>()
                        .unwrap()
                        .as_u128()
                })
                .collect()
        })
        .collect()
}

async fn history_len(l: &Local, task: u128) -> usize {
    let (s, v) = l.get(&format!("/api/tasks/{}", id(task))).await;
    assert_eq!(s, 200, "{v}");
    v["history"].as_array().unwrap().len()
}

#[tokio::test]
async fn workers_sign_in_with_their_pin_and_the_roster_hides_pins() {
    let f = start().await;
    let l = &f.l;
    let (s, roster) = l.get("/api/workers").await;
    assert_eq!(s, 200);
    assert_eq!(roster.as_array().unwrap().len(), 4);
    assert!(
        !roster.to_string().contains("sha256"),
        "no PIN hashes: {roster}"
    );
    let mia = roster
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "m-1")
        .unwrap();
    assert_eq!(
        (mia["manager"].as_bool(), mia["has_pin"].as_bool()),
        (Some(true), Some(true))
    );

    for (body, code, says) in [
        (r#"{"worker": "w-1", "pin": "1111"}"#, 401, "wrong PIN"),
        (r#"{"worker": "w-9", "pin": "1234"}"#, 422, "roster"),
        (r#"{"worker": "w-3", "pin": "1234"}"#, 403, "no PIN"),
        (r#"{"worker": "w-1"}"#, 400, "pin"),
        ("{oops", 400, "bad JSON"),
    ] {
        let (s, v) = l.post("/api/session", body).await;
        assert_eq!(s, code, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    let token = l.sign_in("w-1", "1234").await;
    let (s, me) = l.get_as(&token, "/api/session").await;
    assert_eq!((s, me["name"].as_str()), (200, Some("Ana")));
    let (s, _) = l.send("DELETE", "/api/session", None, Some(&token)).await;
    assert_eq!(s, 200);
    let (s, v) = l.get_as(&token, "/api/my-tasks").await;
    assert_eq!(s, 401, "signed out: {v}");
    let (s, v) = l.get("/api/my-tasks").await;
    assert_eq!(s, 401, "{v}");
}

#[tokio::test]
async fn a_worker_sees_todays_tasks_for_them_and_their_groups_in_due_order() {
    let f = start().await;
    let l = &f.l;
    let ana = l.sign_in("w-1", "1234").await;
    let (s, v) = l.get_as(&ana, "/api/my-tasks").await;
    assert_eq!(s, 200, "{v}");
    // Closing first (a task of it is past due), in due order, then the
    // delivery; Bo's task and the floor group's are not Ana's.
    assert_eq!(task_ids(&v["lists"]), vec![vec![2, 1, 4], vec![DISPUTED]]);
    assert_eq!(v["lists"][0]["name"], "Closing");
    assert_eq!(v["pending"], 4);
    let first = &v["lists"][0]["tasks"][0];
    assert_eq!(first["link"]["target"], "tender-declaration");
    assert!(first["description"].as_str().unwrap().starts_with("How to"));
    assert_eq!(
        first["due_local"].as_str().unwrap().len(),
        5,
        "HH:MM: {first}"
    );

    let (_, all) = l.get_as(&ana, "/api/my-tasks?scope=all").await;
    assert_eq!(task_ids(&all["lists"]).concat().len(), 6);
    let (s, v) = l.get_as(&ana, "/api/my-tasks?scope=everyone").await;
    assert_eq!(s, 400, "{v}");

    let (s, n) = l.get_as(&ana, "/api/notifications").await;
    assert_eq!(s, 200, "{n}");
    assert_eq!(n["time_zone"], tz());
    assert_eq!(n["window_minutes"], 30);
    let titles = |k: &str| -> Vec<String> {
        n[k].as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(titles("past_due"), vec!["Clean the coffee machine"]);
    assert_eq!(titles("upcoming"), vec!["Receive pallet", "Count the till"]);
    assert!(n["past_due"][0]["minutes"].as_i64().unwrap() >= 19);
    assert_eq!(n["pending"], 4);
    let (_, wide) = l.get_as(&ana, "/api/notifications?window=90").await;
    assert_eq!(wide["upcoming"].as_array().unwrap().len(), 3);
    // The CLI asks for one worker without a session, or for the store.
    let (_, bo) = l.get("/api/notifications?worker=w-2&window=240").await;
    // Bo is on one side of the disputed assignment, so it is his too.
    assert_eq!(
        titles_of(&bo["upcoming"]),
        vec!["Receive pallet", "Lock the back door"]
    );
    let (_, store) = l.get("/api/notifications").await;
    assert_eq!(store["pending"], 6);
    for bad in ["window=0", "window=soon", "worker=w%209"] {
        let (s, v) = l.get(&format!("/api/notifications?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }

    // Completing a task takes it off the pending count.
    let (s, v) = l
        .post_as(
            &ana,
            &format!("/api/tasks/{}/status", id(1)),
            r#"{"status": "completed", "note": "balanced"}"#,
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["event"]["worker"], "w-1");
    assert_eq!(v["event"]["terminal"], "pos-1");
    let (_, n) = l.get_as(&ana, "/api/notifications").await;
    assert_eq!(n["pending"], 3);
    assert_eq!(titles_of(&n["upcoming"]), vec!["Receive pallet"]);
}

fn titles_of(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn status_changes_are_by_a_worker_on_the_roster() {
    let f = start().await;
    let l = &f.l;
    let path = format!("/api/tasks/{}/status", id(1));
    let ana = l.sign_in("w-1", "1234").await;
    for (token, body, code, says) in [
        (
            None,
            json!({"status": "in_progress", "worker": "w-9"}),
            422,
            "roster",
        ),
        (None, json!({"status": "in_progress"}), 400, "worker"),
        (
            Some(&ana),
            json!({"status": "in_progress", "worker": "w-2"}),
            403,
            "signed in as w-1",
        ),
        (Some(&ana), json!({"worker": "w-1"}), 400, "status"),
        (Some(&ana), json!({"status": "reopened"}), 422, "reopened"),
    ] {
        let (s, v) = l
            .send(
                "POST",
                &path,
                Some(&body.to_string()),
                token.map(String::as_str),
            )
            .await;
        assert_eq!(s, code, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    assert_eq!(history_len(l, 1).await, 0, "nothing written");
    let (s, v) = l
        .post(&path, r#"{"status": "in_progress", "worker": "w-2"}"#)
        .await;
    assert_eq!(s, 201, "the CLI names a roster worker: {v}");
    assert_eq!(history_len(l, 1).await, 1);
}

#[tokio::test]
async fn the_first_claim_of_a_group_task_wins() {
    let f = start().await;
    let l = &f.l;
    let claim = |n: u128| format!("/api/tasks/{}/claim", id(n));
    let ana = l.sign_in("w-1", "1234").await;
    let bo = l.sign_in("w-2", "2345").await;
    let mia = l.sign_in("m-1", "9999").await;
    let (s, v) = l.post_as(&bo, &claim(4), "").await;
    assert_eq!(s, 409, "Bo is not a closer: {v}");
    let (s, v) = l.post_as(&ana, &claim(4), "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["assignee"], json!({"kind": "worker", "id": "w-1"}));
    let (s, v) = l.post_as(&ana, &claim(4), "{}").await;
    assert_eq!(s, 200, "claiming your own task again changes nothing: {v}");
    let (s, v) = l.post_as(&mia, &claim(4), "").await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("already taken by w-1"));
    let (s, v) = l.post_as(&ana, &claim(3), "").await;
    assert_eq!(s, 409, "Bo's own task: {v}");
    let (s, v) = l.post(&claim(2), r#"{"worker": "w-9"}"#).await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = l.post(&claim(2), r#"{"worker": "m-1"}"#).await;
    assert_eq!(s, 200, "the CLI claims for a named worker: {v}");
    let (s, v) = l
        .post_as(&ana, &format!("/api/tasks/{}/claim", id(999)), "")
        .await;
    assert_eq!(s, 404, "{v}");
    let (_, t) = l.get(&format!("/api/tasks/{}", id(2))).await;
    assert_eq!(t["assignee"]["id"], "m-1");
}

#[tokio::test]
async fn managers_assign_add_lists_and_tasks_and_decide_conflicts() {
    let f = start().await;
    let l = &f.l;
    let ana = l.sign_in("w-1", "1234").await;
    let mia = l.sign_in("m-1", "9999").await;
    let t3 = id(3);

    // Only a manager may do any of this.
    for (path, body) in [
        (
            format!("/api/tasks/{t3}/assign"),
            r#"{"to": "w-1"}"#.to_owned(),
        ),
        (
            "/api/lists".to_owned(),
            r#"{"name": "x", "tasks": []}"#.to_owned(),
        ),
        (
            format!("/api/lists/{}/tasks", f.closing.id),
            r#"{"title": "x"}"#.to_owned(),
        ),
        (
            format!("/api/tasks/{}/resolve", id(DISPUTED)),
            r#"{"status": "completed"}"#.to_owned(),
        ),
    ] {
        let (s, v) = l.post_as(&ana, &path, &body).await;
        assert_eq!(s, 403, "{path}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("only a manager"),
            "{v}"
        );
        let (s, _) = l.post(&path, &body).await;
        assert_eq!(s, 401, "{path} without a session");
    }
    let (s, _) = l.get_as(&ana, "/api/conflicts").await;
    assert_eq!(s, 403);

    // Assign and reassign.
    let (s, v) = l
        .post_as(&mia, &format!("/api/tasks/{t3}/assign"), r#"{"to": "w-1"}"#)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = l
        .post_as(
            &mia,
            &format!("/api/tasks/{t3}/assign"),
            r#"{"to": "group:closers"}"#,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, t) = l.get(&format!("/api/tasks/{t3}")).await;
    assert_eq!(t["assignee"], json!({"kind": "group", "id": "closers"}));

    // A single-purpose task in today's closing list.
    let path = format!("/api/lists/{}/tasks", f.closing.id);
    let (s, v) = l
        .post_as(&mia, &path, r#"{"title": "Check the price of milk", "due": "23:59", "assignee": "w-2", "link": "pos:price-check"}"#)
        .await;
    assert_eq!(s, 201, "{v}");
    let added: TaskId = v["task"].as_str().unwrap().parse().unwrap();
    let (_, t) = l.get(&format!("/api/tasks/{added}")).await;
    assert_eq!(
        t["created_by"],
        json!({"kind": "store", "store": "store-042"})
    );
    assert_eq!(t["due_local"], "23:59");
    for (body, code, says) in [
        (r#"{"title": "  "}"#, 400, "title"),
        (r#"{"title": "x", "due": "25:99"}"#, 400, "due"),
        (r#"{"title": "x", "link": "ftp://x"}"#, 400, "link"),
        (r#"{"title": "x", "assignee": "w-9"}"#, 422, "roster"),
        (r#"{"due": "10:00"}"#, 400, "bad JSON"),
    ] {
        let (s, v) = l.post_as(&mia, &path, body).await;
        assert_eq!(s, code, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    let (s, v) = l
        .post_as(
            &mia,
            &format!("/api/lists/{}/tasks", DocumentId(uuid::Uuid::from_u128(77))),
            r#"{"title": "x"}"#,
        )
        .await;
    assert_eq!(s, 404, "{v}");
    let (_, lists) = l.get("/api/lists").await;
    let closing = lists
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "Closing")
        .unwrap();
    assert_eq!(closing["tasks"], 6, "one added, none of the refused ones");

    // An ad-hoc list of the store's own; a bad task refuses the whole list.
    let (s, v) = l
        .post_as(&mia, "/api/lists", r#"{"name": "Spill in aisle 3", "tasks": [{"title": "Mop"}, {"title": "x", "due": "nope"}]}"#)
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("task 2"), "{v}");
    let (s, v) = l
        .post_as(&mia, "/api/lists", r#"{"name": " ", "tasks": []}"#)
        .await;
    assert_eq!(s, 400, "{v}");
    let (_, lists) = l.get("/api/lists").await;
    assert_eq!(lists.as_array().unwrap().len(), 2, "nothing partial");
    let (s, v) = l
        .post_as(&mia, "/api/lists", r#"{"name": "Spill in aisle 3", "tasks": [{"title": "Mop the floor", "due": "23:58", "assignee": "group:closers"}, {"title": "Put up the sign"}]}"#)
        .await;
    assert_eq!(s, 201, "{v}");
    let new_list = v["list"].as_str().unwrap().to_owned();
    let (_, view) = l.get(&format!("/api/lists/{new_list}")).await;
    assert_eq!(
        view["meta"]["created_by"],
        json!({"kind": "store", "store": "store-042"})
    );
    assert_eq!(view["tasks"].as_array().unwrap().len(), 2);
    let (_, mine) = l.get_as(&ana, "/api/my-tasks").await;
    assert!(mine["lists"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "Spill in aisle 3"));

    // The conflicts made offline on two other terminals.
    let (s, c) = l.get_as(&mia, "/api/conflicts").await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c.as_array().unwrap().len(), 1, "{c}");
    let c = &c[0];
    assert_eq!(c["title"], "Receive pallet");
    let mut statuses: Vec<&str> = c["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec!["completed", "in_progress"]);
    assert_eq!(c["assignees"].as_array().unwrap().len(), 2);

    let resolve = format!("/api/tasks/{}/resolve", id(DISPUTED));
    for (body, code) in [
        ("{}", 400),
        (r#"{"status": "done"}"#, 400),
        (r#"{"assignee": "w-9"}"#, 422),
    ] {
        let (s, v) = l.post_as(&mia, &resolve, body).await;
        assert_eq!(s, code, "{body}: {v}");
    }
    let (s, v) = l
        .post_as(
            &mia,
            &resolve,
            r#"{"status": "completed", "note": "pallet is in", "assignee": "worker:w-2"}"#,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["event"]["prev"].as_array().unwrap().len(),
        2,
        "supersedes both heads"
    );
    let (_, c) = l.get_as(&mia, "/api/conflicts").await;
    assert_eq!(c, json!([]));
    let (_, t) = l.get(&format!("/api/tasks/{}", id(DISPUTED))).await;
    assert_eq!(
        (t["status"].as_str(), t["status_by"].as_str()),
        (Some("completed"), Some("m-1"))
    );
    assert_eq!(t["assignee"]["id"], "w-2");
    let (s, v) = l
        .post_as(&mia, &resolve, r#"{"status": "completed"}"#)
        .await;
    assert_eq!(s, 409, "nothing left to decide: {v}");
    let _ = f.delivery;
}

#[tokio::test]
async fn everything_survives_a_restart_while_offline() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let l = Local::start(dir.path()).await;
    let ana = l.sign_in("w-1", "1234").await;
    let mia = l.sign_in("m-1", "9999").await;
    let (s, _) = l
        .post_as(
            &ana,
            &format!("/api/tasks/{}/status", id(1)),
            r#"{"status": "completed"}"#,
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = l
        .post_as(&ana, &format!("/api/tasks/{}/claim", id(4)), "")
        .await;
    assert_eq!(s, 200);
    let (s, v) = l
        .post_as(
            &mia,
            "/api/lists",
            r#"{"name": "Ad hoc", "tasks": [{"title": "Fix the door"}]}"#,
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, before) = l.get("/api/sync-status").await;
    assert_eq!(before["online"], false);
    l.stop().await;

    let l = Local::start(dir.path()).await;
    let (s, v) = l.get_as(&ana, "/api/my-tasks").await;
    assert_eq!(s, 401, "sessions live in memory: {v}");
    let ana = l.sign_in("w-1", "1234").await;
    let (_, t) = l.get(&format!("/api/tasks/{}", id(1))).await;
    assert_eq!(t["status"], "completed");
    let (_, t) = l.get(&format!("/api/tasks/{}", id(4))).await;
    assert_eq!(t["assignee"]["id"], "w-1");
    let (_, lists) = l.get("/api/lists").await;
    assert!(
        lists
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "Ad hoc"),
        "{lists}"
    );
    let (_, after) = l.get("/api/sync-status").await;
    assert_eq!(
        after["unconfirmed_changes"], before["unconfirmed_changes"],
        "{after}"
    );
    assert!(
        after["unconfirmed_changes"].as_u64().unwrap() >= 4,
        "{after}"
    );
    // And work goes on.
    let (s, _) = l
        .post_as(
            &ana,
            &format!("/api/tasks/{}/status", id(1)),
            r#"{"status": "reopened"}"#,
        )
        .await;
    assert_eq!(s, 201);
}
