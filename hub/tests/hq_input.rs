//! HQ input that used to be silently accepted or half-written (issue 19,
//! item 6): adding is not updating, a refused request writes nothing,
//! unknown workers, roles and groups are refused with the valid ones
//! listed, times are quoted in the store's zone, and templates can be
//! taken off stores and deleted.

use engine::document::directory;
use engine::ids::{DocumentId, StoreId, TemplateId};
use hub::cli::{self, ListsCmd, Remote, StoresCmd, WorkersCmd};
use reqwest::Method;
use serde_json::{json, Value};

mod common;
use common::admin::{start, Api};

impl Api {
    fn remote(&self) -> Remote {
        Remote {
            hub_url: self.base.trim_end_matches("/api").to_owned(),
            token: Some("admin".into()),
            token_file: None,
            json: true,
        }
    }

    /// How many lists `store` has (from the status index, caught up).
    async fn lists(&self, store: &str) -> usize {
        let (_, rows) = self
            .call(Method::GET, &format!("/status/lists?store={store}"), None)
            .await;
        rows.as_array().map(Vec::len).unwrap_or(0)
    }

    async fn templates(&self) -> Vec<Value> {
        let (s, v) = self.call(Method::GET, "/templates", None).await;
        assert_eq!(s, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    }

    async fn roster(&self, store: &str) -> Value {
        let (s, v) = self
            .call(Method::GET, &format!("/stores/{store}/workers"), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// The templates `store`'s directory carries (what terminals make
    /// lists from offline).
    async fn directory_templates(&self, store: &str) -> Vec<TemplateId> {
        let dir = DocumentId::directory_of(&store.parse::<StoreId>().unwrap());
        self.hub
            .call(move |hub, _| {
                let view = directory::read(hub.document(dir).unwrap()).unwrap();
                (view.templates.keys().copied().collect(), Vec::new())
            })
            .await
            .unwrap()
    }
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

#[tokio::test]
async fn adding_a_store_whose_id_is_taken_is_refused_and_changes_nothing() {
    let api = start().await;
    let (s, v) = api
        .call(
            Method::POST,
            "/stores",
            Some(json!({"id": "s1", "name": "Other shop", "time_zone": "Asia/Tokyo"})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(error_of(&v).contains("store s1 already exists"), "{v}");
    assert!(error_of(&v).contains("hub stores update --id s1"), "{v}");
    let err = cli::stores(
        &api.remote(),
        StoresCmd::Add {
            id: "s1".into(),
            name: "Other shop".into(),
            tz: "Asia/Tokyo".into(),
            locale: None,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("409") && err.contains("stores update"),
        "{err}"
    );
    let (_, stores) = api.call(Method::GET, "/stores", None).await;
    let s1 = stores
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "s1")
        .unwrap();
    assert_eq!(
        (&s1["name"], &s1["time_zone"]),
        (&json!("s1"), &json!("Europe/Berlin"))
    );
}

#[tokio::test]
async fn adding_a_worker_whose_id_is_taken_is_refused_and_update_changes_only_what_it_is_given() {
    let api = start().await;
    let remote = api.remote();
    let add = |role: &str, groups: Vec<String>, pin: Option<&str>| WorkersCmd::Add {
        store: "s1".into(),
        id: "w-ana".into(),
        name: "Ana".into(),
        role: role.into(),
        groups,
        pin: pin.map(str::to_owned),
    };
    cli::workers(
        &remote,
        add("manager", vec!["closers".into()], Some("2468")),
    )
    .await
    .unwrap();
    // A second add with the same id: refused, and Ana keeps her groups and PIN.
    let err = cli::workers(&remote, add("cashier", vec![], Some("1111")))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("409"), "{err}");
    assert!(
        err.contains("hub workers update --store s1 --id w-ana"),
        "{err}"
    );
    let (s, v) = api
        .call(
            Method::PUT,
            "/stores/s1/workers/w-ana",
            Some(json!({"name": "Ana", "role": "cashier"})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let roster = api.roster("s1").await;
    assert_eq!(roster[0]["role"], "manager");
    assert_eq!(roster[0]["groups"], json!(["closers"]));
    assert_eq!(roster[0]["has_pin"], true);
    let pin_before = api.hub.call(|hub, _| {
        let r = hub.roster(&"s1".parse().unwrap()).unwrap();
        (r.values().next().unwrap().pin.clone(), Vec::new())
    });
    let pin_before = pin_before.await.unwrap();

    // An update changes what it is given and keeps the rest.
    cli::workers(
        &remote,
        WorkersCmd::Update {
            store: "s1".into(),
            id: "w-ana".into(),
            name: None,
            role: Some("cashier".into()),
            groups: vec![],
            no_groups: false,
            pin: None,
        },
    )
    .await
    .unwrap();
    let roster = api.roster("s1").await;
    assert_eq!(roster[0]["role"], "cashier");
    assert_eq!(roster[0]["name"], "Ana");
    assert_eq!(roster[0]["groups"], json!(["closers"]), "groups kept");
    let pin_after = api.hub.call(|hub, _| {
        let r = hub.roster(&"s1".parse().unwrap()).unwrap();
        (r.values().next().unwrap().pin.clone(), Vec::new())
    });
    assert_eq!(pin_after.await.unwrap(), pin_before, "PIN kept");
    let (s, v) = api
        .call(
            Method::PATCH,
            "/stores/s1/workers/w-ana",
            Some(json!({"groups": []})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["groups"], json!([]));
    // Updating a worker who is not there says how to add them.
    let (s, v) = api
        .call(
            Method::PATCH,
            "/stores/s1/workers/w-bo",
            Some(json!({"name": "Bo"})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(
        error_of(&v).contains("hub workers add --store s1 --id w-bo"),
        "{v}"
    );
    let (s, v) = api
        .call(Method::PATCH, "/stores/s1/workers/w-ana", Some(json!({})))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("nothing to change"), "{v}");
}

#[tokio::test]
async fn a_recurring_list_for_an_unknown_group_is_refused_whole() {
    let api = start().await;
    let (s, v) = api
        .call(
            Method::POST,
            "/store-groups/north/stores",
            Some(json!({"stores": ["s1"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let create = |stores: Vec<String>, groups: Vec<String>| ListsCmd::Create {
        name: "Opening".into(),
        rrule: "FREQ=DAILY".into(),
        time: "07:00".into(),
        start_date: None,
        tasks: vec!["Unlock@07:15".into()],
        stores,
        groups,
    };
    let err = cli::lists(
        &api.remote(),
        create(vec!["s2".into()], vec!["south".into()]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown store group south"), "{err}");
    assert!(err.contains("the store groups are north"), "{err}");
    assert!(api.templates().await.is_empty(), "no template left behind");
    assert_eq!(api.lists("s2").await, 0);

    // Assigning an existing template: a bad group leaves the stores alone too.
    let (s, t) = api
        .call(
            Method::POST,
            "/templates",
            Some(
                json!({"name": "Opening", "rrule": "FREQ=DAILY", "time": "07:00",
                        "tasks": [{"title": "Unlock"}]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let id = t["id"].as_str().unwrap();
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/templates/{id}/assign"),
            Some(json!({"stores": ["s2"], "groups": ["south"]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(api.templates().await[0]["stores"], json!([]));
    assert_eq!(api.lists("s2").await, 0);

    // The same request with the groups right goes through in one piece.
    cli::lists(
        &api.remote(),
        create(vec!["s2".into()], vec!["north".into()]),
    )
    .await
    .unwrap();
    let created = api
        .templates()
        .await
        .into_iter()
        .find(|t| t["template"]["id"] != id)
        .unwrap();
    assert_eq!(created["stores"], json!(["s1", "s2"]));
}

/// Record a status event on the first task of `doc` at the hub.
async fn record_first_task(api: &Api, doc: DocumentId) {
    use engine::document::instance;
    use engine::ids::EventId;
    use engine::model::{Status, StatusUpdate};
    api.hub
        .call(move |hub, now| {
            let view = instance::read(hub.document(doc).unwrap()).unwrap();
            let update = StatusUpdate {
                id: EventId(uuid::Uuid::new_v4()),
                task: view.tasks[0].spec.id,
                status: Status::InProgress,
                worker: "w-1".parse().unwrap(),
                terminal: "pos-1".parse().unwrap(),
                note: None,
            };
            let out = hub
                .edit(doc, now, |d| {
                    Ok(vec![instance::record_status(d, &update, now)?.1])
                })
                .unwrap();
            ((), out)
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_template_is_unassigned_and_deleted_withdrawing_only_future_lists_nobody_started() {
    let api = start().await;
    // A second store on s1's clock: the lists both stores keep are "today"
    // and later by one calendar (s2, in New York, is a day behind Berlin
    // between 23:00 and 05:00 UTC).
    let (s, v) = api
        .call(
            Method::POST,
            "/stores",
            Some(json!({"id": "s3", "name": "Store 3", "time_zone": "Europe/Berlin"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    api.call(
        Method::PUT,
        "/stores/s1/workers/w-1",
        Some(json!({"name": "Ana", "role": "cashier"})),
    )
    .await;
    api.call(
        Method::POST,
        "/store-groups/north/stores",
        Some(json!({"stores": ["s1", "s3"]})),
    )
    .await;
    let (s, t) = api
        .call(
            Method::POST,
            "/templates",
            Some(
                json!({"name": "Opening", "rrule": "FREQ=DAILY", "time": "07:00",
                        "tasks": [{"title": "Unlock"}], "stores": ["s1"], "groups": ["north"]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let id: TemplateId = t["id"].as_str().unwrap().parse().unwrap();
    let made = api.lists("s1").await;
    assert_eq!(made, 15, "today and 14 days ahead");
    assert_eq!(api.directory_templates("s1").await, vec![id]);
    let s1: StoreId = "s1".parse().unwrap();
    // "Today" as the hub saw it when it made the lists (store-local): the
    // earliest list's date.
    let (_, rows) = api.call(Method::GET, "/status/lists?store=s1", None).await;
    let today: chrono::NaiveDate = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["date"].as_str().unwrap().parse().unwrap())
        .min()
        .unwrap();
    let list_of =
        |days: u64| DocumentId::recurring_instance(id, &s1, today + chrono::Days::new(days));
    // Somebody already started tomorrow's list.
    record_first_task(&api, list_of(1)).await;

    // Off s1 by name: s1 still gets it through north, so nothing changes.
    let unassign_path = format!("/templates/{id}/unassign");
    let unassign = |body: Value| api.call(Method::POST, &unassign_path, Some(body));
    let (s, v) = unassign(json!({"stores": ["s1"]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["stores"], &v["withdrawn"]),
        (&json!([]), &json!([])),
        "{v}"
    );
    let unassign_cmd = |stores: Vec<String>| ListsCmd::Unassign {
        template: id.to_string(),
        stores,
        groups: vec![],
    };
    let err = cli::lists(&api.remote(), unassign_cmd(vec!["s1".into()]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not assigned to store s1"), "{err}");
    assert!(cli::lists(&api.remote(), unassign_cmd(vec![]))
        .await
        .is_err());
    assert_eq!(api.lists("s1").await, 15);
    let (s, v) = unassign(json!({"stores": ["s3"]})).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        error_of(&v).contains("is not assigned to store s3; it is assigned to group north"),
        "{v}"
    );

    // Off north: both stores lose it; their future lists nobody started go.
    let (s, v) = unassign(json!({"groups": ["north"]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stores"], json!(["s1", "s3"]));
    let kept: Vec<&str> = v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        kept.contains(&list_of(0).to_string().as_str()),
        "today's stays: {v}"
    );
    assert!(
        kept.contains(&list_of(1).to_string().as_str()),
        "the started one stays: {v}"
    );
    assert_eq!(
        v["withdrawn"].as_array().unwrap().len(),
        2 * 15 - kept.len(),
        "{v}"
    );
    assert_eq!(api.lists("s1").await, 2);
    assert_eq!(api.lists("s3").await, 1, "today's");
    assert!(
        api.directory_templates("s1").await.is_empty(),
        "terminals stop making it"
    );
    let (s, _) = api
        .call(Method::GET, &format!("/documents/{}", list_of(2)), None)
        .await;
    assert_eq!(s, 404, "withdrawn at the hub");
    // The next materialization does not bring them back.
    api.hub
        .call(|hub, now| ((), hub.materialize_horizon(now).unwrap()))
        .await
        .unwrap();
    assert_eq!(api.lists("s1").await, 2);

    // Assigned again, then deleted from the CLI.
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/templates/{id}/assign"),
            Some(json!({"stores": ["s1"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(api.lists("s1").await, 15);
    let delete = |yes| ListsCmd::Delete {
        template: id.to_string(),
        yes,
    };
    assert!(
        cli::lists(&api.remote(), delete(false)).await.is_err(),
        "needs --yes"
    );
    cli::lists(&api.remote(), delete(true)).await.unwrap();
    assert!(api.templates().await.is_empty());
    assert_eq!(api.lists("s1").await, 2, "today's and the started one stay");
    assert!(api.directory_templates("s1").await.is_empty());
    let (s, v) = api
        .call(Method::DELETE, &format!("/templates/{id}"), None)
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("unknown template"), "{v}");
}

#[tokio::test]
async fn unknown_worker_assignees_roles_and_groups_are_refused_with_the_valid_ones_listed() {
    let api = start().await;
    for (store, w) in [("s1", "w-1"), ("s1", "w-2"), ("s2", "w-9")] {
        let (s, v) = api
            .call(
                Method::PUT,
                &format!("/stores/{store}/workers/{w}"),
                Some(json!({"name": w, "role": "cashier"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    // Roles: a typo is refused, listing the roles.
    let (s, v) = api
        .call(
            Method::PUT,
            "/stores/s1/workers/w-3",
            Some(json!({"name": "Bo", "role": "manger"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        error_of(&v).contains("unknown role \"manger\"; a role is one of manager, cashier"),
        "{v}"
    );
    let (s, v) = api
        .call(
            Method::PATCH,
            "/stores/s1/workers/w-1",
            Some(json!({"role": "manger"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(api.roster("s1").await.as_array().unwrap().len(), 2);

    // One-off lists: the worker must be on the store's roster ...
    let list = |stores: Value, assignee: &str| {
        json!({"stores": stores, "name": "Delivery", "date": "2026-12-01",
               "tasks": [{"title": "Count pallets"}, {"title": "Sign", "assignee": assignee}]})
    };
    let (s, v) = api
        .call(
            Method::POST,
            "/lists",
            Some(list(json!(["s1"]), "worker:nobody")),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        error_of(&v).contains(
            "task 2: worker:nobody is not on the roster of store s1; its workers are w-1, w-2"
        ),
        "{v}"
    );
    // ... of every store it goes to (worker ids are per store).
    let (s, v) = api
        .call(
            Method::POST,
            "/lists",
            Some(list(json!(["s1", "s2"]), "worker:w-1")),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        error_of(&v).contains("not on the roster of store s2"),
        "{v}"
    );
    assert_eq!(api.lists("s1").await, 0, "nothing published");
    let (s, v) = api
        .call(
            Method::POST,
            "/lists",
            Some(list(json!(["s1"]), "worker:w-2")),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    // Recurring lists: on the roster of each store named ...
    let template = |assignee: &str, stores: Value, groups: Value| {
        json!({"name": "Opening", "rrule": "FREQ=DAILY", "time": "07:00",
               "tasks": [{"title": "Unlock", "assignee": assignee}],
               "stores": stores, "groups": groups})
    };
    let (s, v) = api
        .call(
            Method::POST,
            "/templates",
            Some(template("worker:nobody", json!(["s1"]), json!([]))),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        error_of(&v).contains("worker:nobody is not on the roster of store s1"),
        "{v}"
    );
    // ... and never for store groups, whose stores change.
    api.call(
        Method::POST,
        "/store-groups/north/stores",
        Some(json!({"stores": ["s1"]})),
    )
    .await;
    let (s, v) = api
        .call(
            Method::POST,
            "/templates",
            Some(template("worker:w-1", json!([]), json!(["north"]))),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        error_of(&v).contains("a list for store groups cannot be assigned to worker:w-1"),
        "{v}"
    );
    assert!(api.templates().await.is_empty());
    let (s, t) = api
        .call(
            Method::POST,
            "/templates",
            Some(template("worker:w-1", json!(["s1"]), json!([]))),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    // Assigning it to a store where w-1 is nobody is refused too.
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/templates/{}/assign", t["id"].as_str().unwrap()),
            Some(json!({"stores": ["s2"]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        error_of(&v).contains("not on the roster of store s2; its workers are w-9"),
        "{v}"
    );
}

#[tokio::test]
async fn a_task_arg_whose_due_time_is_not_a_time_publishes_nothing() {
    let api = start().await;
    let err = cli::lists(
        &api.remote(),
        ListsCmd::Publish {
            stores: vec!["s1".into()],
            name: "Closing".into(),
            date: "2026-12-01".into(),
            tasks: vec!["Lock up@9pm".into()],
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("due \"9pm\" is not a time"), "{err}");
    assert_eq!(api.lists("s1").await, 0);
}

#[tokio::test]
async fn a_due_time_before_the_start_is_refused_in_store_time_for_recurring_and_one_off_lists() {
    let api = start().await;
    let (s, v) = api
        .call(
            Method::POST,
            "/templates",
            Some(
                json!({"name": "Closing", "rrule": "FREQ=DAILY", "time": "21:00",
                        "tasks": [{"title": "Count the till", "due": "20:00"}],
                        "stores": ["s2"]}),
            ),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        error_of(&v).contains("task 1: due 20:00 is before the list's start 21:00 (store time)"),
        "{v}"
    );
    assert!(api.templates().await.is_empty());
    // Past midnight within 12 hours is the next day, as before.
    let (s, v) = api
        .call(
            Method::POST,
            "/templates",
            Some(
                json!({"name": "Closing", "rrule": "FREQ=DAILY", "time": "21:00",
                        "tasks": [{"title": "Lock the back door", "due": "00:30"}]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let (s, v) = api
        .call(
            Method::POST,
            "/lists",
            Some(
                json!({"store": "s2", "name": "Delivery", "date": "2026-12-01",
                        "tasks": [{"title": "Count pallets", "start": "10:00", "due": "09:00"}]}),
            ),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        error_of(&v),
        "task 1: due 09:00 is before its start 10:00 (store time, America/New_York); \
         move the due time after the start"
    );
}
