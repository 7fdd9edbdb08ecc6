//! Contacts through the real API and store: CRUD with search and paging, validation errors
//! that name the field, caller identification linking conversations (and with them trust),
//! the contact tools in a conversation, and vCard export validated by Python's `vobject` and
//! import of a card `vobject` wrote (all or nothing).

use crate::common;

use std::process::Command;
use std::sync::Arc;

use common::{TestDaemon, TestResult};
use local_assistant::events::EventBus;
use local_assistant::home::contacts::{ContactInput, Contacts, EmailInput, PhoneInput, Region};
use local_assistant::store::{Store, StoreOptions};
use serde_json::{json, Value};

async fn create(d: &TestDaemon, body: Value) -> TestResult<(u16, Value)> {
    let r = d.post("/api/v1/contacts").json(&body).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

async fn get_json(d: &TestDaemon, path: &str) -> TestResult<Value> {
    let r = d.get(path).send().await?;
    assert_eq!(r.status(), 200, "{path}");
    Ok(r.json().await?)
}

fn python() -> String {
    std::env::var("LA_TEST_PYTHON").unwrap_or_else(|_| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv-test/bin/python")
            .display()
            .to_string()
    })
}

/// Run `script` with the test Python; `stdin` is fed to it. Fails clearly without vobject.
fn run_python(script: &str, stdin: &str) -> TestResult<String> {
    use std::io::Write;
    let py = python();
    let mut child = Command::new(&py)
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {py} ({e}); run `make test-deps` (installs vobject into .venv-test)"
            )
        })?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named 'vobject'") {
        return Err(format!("{py} has no vobject; run `make test-deps`").into());
    }
    if !out.status.success() {
        return Err(format!("python failed: {err}").into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test]
async fn contacts_are_created_searched_paged_changed_and_deleted() -> TestResult {
    let d = TestDaemon::start().await?;
    let (s, anna) = create(
        &d,
        json!({"display_name": "Anna Smith", "given_name": "Anna", "family_name": "Smith",
               "aliases": ["mom"], "phones": [{"number": "(202) 555-0143"}],
               "emails": [{"address": "Anna@Example.org", "label": "work"}], "trust": "household"}),
    )
    .await?;
    assert_eq!(s, 201, "{anna}");
    assert_eq!(
        anna["phones"][0]["number"], "+12025550143",
        "national form read in the US"
    );
    assert_eq!(anna["phones"][0]["label"], "mobile");
    assert_eq!(anna["emails"][0]["address"], "anna@example.org");
    assert_eq!(anna["trust"], "household");
    for name in ["Bob Jones", "Carla Diaz", "Dan Brown"] {
        let (s, v) = create(&d, json!({ "display_name": name })).await?;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["trust"], "known", "the default trust");
    }
    let page = get_json(&d, "/api/v1/contacts?limit=2").await?;
    assert_eq!(page["total"], 4);
    assert_eq!(page["items"][0]["display_name"], "Anna Smith");
    assert_eq!(page["next_offset"], 2);
    let page2 = get_json(&d, "/api/v1/contacts?limit=2&offset=2").await?;
    assert_eq!(page2["items"][1]["display_name"], "Dan Brown");
    assert!(page2["next_offset"].is_null());
    for (q, want) in [
        ("mom", "Anna Smith"),
        ("JONES", "Bob Jones"),
        ("555-0143", "Anna Smith"),
        ("example.org", "Anna Smith"),
    ] {
        let v = get_json(&d, &format!("/api/v1/contacts?q={}", urlencode(q))).await?;
        assert_eq!(v["total"], 1, "{q}: {v}");
        assert_eq!(v["items"][0]["display_name"], want, "{q}");
    }
    let id = anna["id"].as_i64().unwrap_or(0);
    let r = d
        .client
        .patch(d.url(&format!("/api/v1/contacts/{id}")))
        .bearer_auth(common::TOKEN)
        .json(&json!({"phones": [{"number": "+1 202 555 0143"}, {"number": "202-555-0199", "label": "work"}], "trust": "owner"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v["phones"][1]["number"], "+12025550199");
    assert_eq!(v["trust"], "owner");
    assert_eq!(v["aliases"][0], "mom", "fields not in the patch are kept");
    let r = d
        .client
        .delete(d.url(&format!("/api/v1/contacts/{id}")))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let r = d.get(&format!("/api/v1/contacts/{id}")).send().await?;
    assert_eq!(r.status(), 404);
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn invalid_contacts_are_refused_with_the_field_named() -> TestResult {
    let d = TestDaemon::start_with(
        |c| c.contacts.default_region = Region::parse("DE").unwrap_or(c.contacts.default_region),
        Vec::new(),
    )
    .await?;
    let (s, _) = create(
        &d,
        json!({"display_name": "Eva", "phones": [{"number": "030 901820"}]}),
    )
    .await?;
    assert_eq!(s, 201);
    let cases = [
        (json!({}), 422, "display_name"),
        (
            json!({"display_name": "X", "phones": [{"number": "+49 30 901820"}, {"number": "12"}]}),
            422,
            "phones[1].number",
        ),
        (
            json!({"display_name": "X", "phones": [{"number": "12"}]}),
            422,
            "default region DE",
        ),
        (
            json!({"display_name": "X", "phones": [{"number": "0171 1234567", "label": "car"}]}),
            422,
            "phones[0].label",
        ),
        (
            json!({"display_name": "X", "emails": [{"address": "nope"}]}),
            422,
            "emails[0].address",
        ),
        (json!({"display_name": "X", "trust": "boss"}), 422, "trust"),
        (
            json!({"display_name": "X", "nickname": "y"}),
            422,
            "nickname",
        ),
        (
            json!({"display_name": "X", "phones": [{"number": "+4930901820"}]}),
            409,
            "already belongs to contact",
        ),
    ];
    for (body, status, want) in cases {
        let (s, v) = create(&d, body.clone()).await?;
        let msg = v["error"]["message"].as_str().unwrap_or("").to_owned();
        assert_eq!(s, status, "{body} → {msg}");
        assert!(msg.contains(want), "{body}: {msg:?} should name {want:?}");
    }
    let v = get_json(&d, "/api/v1/contacts").await?;
    assert_eq!(v["total"], 1, "nothing invalid was stored");
    Ok(())
}

#[tokio::test]
async fn a_new_contact_identifies_existing_conversations_and_gives_its_trust() -> TestResult {
    let d = TestDaemon::start().await?;
    let chat = |text: &'static str| {
        d.post("/api/v1/chat")
            .json(&json!({ "text": text, "from": "+12025550143" }))
            .send()
    };
    let v: Value = chat("set a timer for 5 minutes").await?.json().await?;
    assert_eq!(
        v["outcome"], "refused",
        "an unknown number may not set timers: {v}"
    );
    let convs = get_json(&d, "/api/v1/conversations").await?;
    let conv = convs["items"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["address"] == "+12025550143"))
        .cloned()
        .unwrap_or_default();
    assert!(
        conv["contact_id"].is_null(),
        "unknown senders are not contacts: {conv}"
    );

    // Added with the number written the way people write it: the existing conversation is linked.
    let (s, c) = create(
        &d,
        json!({"display_name": "Anna", "phones": [{"number": "202.555.0143"}], "trust": "known"}),
    )
    .await?;
    assert_eq!(s, 201);
    let convs = get_json(&d, "/api/v1/conversations").await?;
    let conv = convs["items"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["address"] == "+12025550143"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(conv["contact_id"], c["id"]);
    assert_eq!(conv["contact_name"], "Anna");
    let v: Value = chat("set a timer for 5 minutes").await?.json().await?;
    assert_eq!(v["outcome"], "answered", "a known contact may: {v}");

    // A conversation started after the contact exists is linked at once.
    let r = d
        .post("/api/v1/messages/inbound")
        .json(&json!({"from": "+12025550143", "text": "hi", "idempotency_key": "k1"}))
        .send()
        .await?;
    assert_eq!(r.status(), 202);

    // Deleting the contact unlinks it and the trust goes with it.
    let id = c["id"].as_i64().unwrap_or(0);
    let r = d
        .client
        .delete(d.url(&format!("/api/v1/contacts/{id}")))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let convs = get_json(&d, "/api/v1/conversations").await?;
    assert!(convs["items"]
        .as_array()
        .is_some_and(|a| a.iter().all(|c| c["contact_id"].is_null())));
    let v: Value = chat("set a timer for 5 minutes").await?.json().await?;
    assert_eq!(v["outcome"], "refused");
    Ok(())
}

#[tokio::test]
async fn every_channel_address_form_identifies_the_same_contact() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &dir.path().join("db.sqlite"),
        &StoreOptions::from(&local_assistant::config::Config::defaults().store),
    )?;
    let events = Arc::new(EventBus::new(64));
    let mut rx = events.subscribe();
    let us = Region::parse("US")?;
    let contacts = Contacts::new(store.clone(), events, us);
    let anna = contacts
        .create(ContactInput {
            display_name: Some("Anna Smith".into()),
            aliases: Some(vec!["Mom".into()]),
            phones: Some(vec![PhoneInput {
                number: "(202) 555-0143".into(),
                label: None,
            }]),
            emails: Some(vec![EmailInput {
                address: "anna@example.org".into(),
                label: None,
            }]),
            ..ContactInput::default()
        })
        .await?;
    let ev = rx.try_recv()?;
    assert_eq!(serde_json::to_value(&ev)?["type"], "contact.created");
    for (channel, address) in [
        ("sms", "+12025550143"),
        ("voice", "2025550143"),
        ("voice", "+1 (202) 555-0143"),
        ("sip", "sip:+12025550143@gateway.local"),
        ("sip", "tel:+1-202-555-0143"),
        ("email", "Anna@Example.org"),
        ("email", "mailto:anna@example.org"),
        ("sip", "sip:mom@pbx.local"),
    ] {
        let who = contacts.identify(channel, address).await?;
        assert_eq!(who.map(|c| c.id), Some(anna.id), "{channel} {address}");
    }
    for (channel, address) in [
        ("api", "api"),
        ("sms", "+12025550144"),
        ("sip", "sip:dad@pbx"),
    ] {
        assert!(
            contacts.identify(channel, address).await?.is_none(),
            "{address}"
        );
    }
    // Names as said in requests.
    for said in ["Anna", "mom", "my mom", "Anna Smith", "smith", "Mom's"] {
        let found = contacts.find_by_name(said).await?;
        assert_eq!(found.first().map(|c| c.id), Some(anna.id), "{said}");
    }
    assert!(contacts.find_by_name("Bob").await?.is_empty());
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn contact_tools_look_up_by_alias_and_add_with_routing() -> TestResult {
    use local_assistant::domain::{ConversationId, Trust};
    use local_assistant::orchestrator::tools::ToolContext;
    let dir = tempfile::tempdir()?;
    let cfg = common::test_config(dir.path());
    let engine = local_assistant::orchestrator::standalone::Engine::open(&cfg).await?;
    let o = &engine.orchestrator;
    let ctx = |trust| ToolContext {
        conversation_id: ConversationId(1),
        channel: "sms".into(),
        trust,
        now: jiff::Zoned::now(),
        source_message_id: None,
    };
    let tools = o.tools();
    let add = tools
        .call(
            o.router(),
            "contact_add",
            json!({"name": "Anna", "phone": "(202) 555-0143", "aliases": "mom, Annie"}),
            &ctx(Trust::Owner),
        )
        .await?
        .map_err(|r| r.say)?;
    assert_eq!(add.say, "Added Anna with the number +12025550143.");
    let found = tools
        .call(
            o.router(),
            "contact_lookup",
            json!({"name": "Mom"}),
            &ctx(Trust::Owner),
        )
        .await?
        .map_err(|r| r.say)?;
    assert_eq!(found.say, "Anna's number is +12025550143 (mobile).");
    assert_eq!(found.data[0]["phones"][0]["number"], "+12025550143");
    let none = tools
        .call(
            o.router(),
            "contact_lookup",
            json!({"name": "Bob"}),
            &ctx(Trust::Owner),
        )
        .await?
        .map_err(|r| r.say)?;
    assert_eq!(none.say, "I don't have a contact called Bob.");
    // Contacts are the owner's: a household member is refused politely.
    let refused = tools
        .call(
            o.router(),
            "contact_lookup",
            json!({"name": "mom"}),
            &ctx(Trust::Household),
        )
        .await?;
    assert!(refused.is_err());
    let bad = tools
        .call(
            o.router(),
            "contact_add",
            json!({"name": "X", "phone": "12"}),
            &ctx(Trust::Owner),
        )
        .await;
    let msg = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("phones[0].number") && msg.contains("\"12\""),
        "{msg}"
    );
    engine.close().await;
    Ok(())
}

#[tokio::test]
async fn exported_vcards_are_read_by_vobject_and_vobject_cards_import() -> TestResult {
    let d = TestDaemon::start().await?;
    let note = "Allergic to nuts; likes tea, not coffee.\nSecond line with Ünïcödé and a long tail that must be folded because it is far longer than seventy-five octets";
    let (s, _) = create(
        &d,
        json!({"display_name": "Zoë O'Neil", "given_name": "Zoë", "family_name": "O'Neil",
               "aliases": ["Zo", "Auntie"], "phones": [{"number": "2025550143"}, {"number": "+44 20 7946 0958", "label": "work"}],
               "emails": [{"address": "zoe@example.org"}], "notes": note, "trust": "household"}),
    )
    .await?;
    assert_eq!(s, 201);
    let script = r#"
import sys, json, vobject
out = []
for card in vobject.readComponents(sys.stdin.read(), validate=True):
    out.append({
        "version": card.version.value,
        "fn": card.fn.value,
        "n": [card.n.value.family, card.n.value.given],
        "nickname": [n.value for n in card.contents["nickname"]],
        "tel": [[t.value, t.params.get("TYPE", [])] for t in card.contents["tel"]],
        "email": [e.value for e in card.contents["email"]],
        "note": card.note.value,
        "uid": card.uid.value,
        "trust": card.contents["x-local-assistant-trust"][0].value,
    })
print(json.dumps(out))
"#;
    for version in ["3.0", "4.0"] {
        let r = d
            .get(&format!("/api/v1/contacts/export.vcf?version={version}"))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        assert!(r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/vcard"));
        let text = r.text().await?;
        assert!(
            text.lines().all(|l| l.len() <= 76),
            "folded at 75 octets + CR"
        );
        let parsed: Value = serde_json::from_str(&run_python(script, &text)?)?;
        let c = &parsed[0];
        assert_eq!(c["version"], version);
        assert_eq!(c["fn"], "Zoë O'Neil");
        assert_eq!(c["n"], json!(["O'Neil", "Zoë"]));
        assert_eq!(c["note"], note);
        assert_eq!(c["trust"], "household");
        assert_eq!(c["email"], json!(["zoe@example.org"]));
        let tels: Vec<String> = c["tel"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t[0].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<String> = match version {
            "3.0" => vec!["+12025550143".into(), "+442079460958".into()],
            _ => vec!["tel:+12025550143".into(), "tel:+442079460958".into()],
        };
        assert_eq!(tels, want);
        assert_eq!(c["nickname"], json!(["Zo", "Auntie"]));
    }

    // A card written by vobject imports, its national number read in the default region.
    let make = r#"
import vobject
c = vobject.vCard()
c.add("fn").value = "Greta Lind, PhD"
c.add("n").value = vobject.vcard.Name(family="Lind", given="Greta")
t = c.add("tel"); t.value = "(202) 555-0177"; t.type_param = "CELL"
w = c.add("tel"); w.value = "+46 8 123 456 78"; w.type_param = "WORK"
c.add("email").value = "greta@example.se"
c.add("nickname").value = "Gigi"
c.add("note").value = "Met at the book club; bring the, commas"
c.add("uid").value = "greta-1"
print(c.serialize(), end="")
"#;
    let card = run_python(make, "")?;
    let r = d
        .post("/api/v1/contacts/import")
        .header("content-type", "text/vcard")
        .body(card.clone())
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v, json!({"created": 1, "updated": 0}));
    let found = get_json(&d, "/api/v1/contacts?q=gigi").await?;
    let g = &found["items"][0];
    assert_eq!(g["display_name"], "Greta Lind, PhD");
    assert_eq!(
        g["phones"][0],
        json!({"number": "+12025550177", "label": "mobile"})
    );
    assert_eq!(
        g["phones"][1],
        json!({"number": "+46812345678", "label": "work"})
    );
    assert_eq!(g["notes"], "Met at the book club; bring the, commas");
    assert_eq!(g["uid"], "greta-1");
    // The same card again updates by UID instead of duplicating.
    let r = d.post("/api/v1/contacts/import").body(card).send().await?;
    let v: Value = r.json().await?;
    assert_eq!(v, json!({"created": 0, "updated": 1}));
    Ok(())
}

#[tokio::test]
async fn an_import_with_one_bad_card_names_it_and_stores_nothing() -> TestResult {
    let d = TestDaemon::start().await?;
    let (s, _) = create(
        &d,
        json!({"display_name": "Owner", "phones": [{"number": "+12025550100"}]}),
    )
    .await?;
    assert_eq!(s, 201);
    let good = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Good One\r\nTEL:+12025550101\r\nEND:VCARD\r\n";
    let cases = [
        // An unreadable number: card 2, on its TEL line (line 9 of the file).
        (
            format!("{good}BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Bad Number\r\nN:Number;Bad;;;\r\nTEL;TYPE=CELL:call me maybe\r\nEND:VCARD\r\n"),
            "card 2 (\"Bad Number\"), line 10",
        ),
        // A number another contact already has.
        (
            format!("{good}BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Taken\r\nTEL:(202) 555-0100\r\nEND:VCARD\r\n"),
            "already belongs to contact",
        ),
        // A broken line.
        (format!("{good}BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\nthis is no property\r\nEND:VCARD\r\n"), "line 9"),
        // The same number twice in the file.
        (format!("{good}{}", good.replace("Good One", "Twin")), "also the number of card 1"),
    ];
    for (file, want) in cases {
        let r = d.post("/api/v1/contacts/import").body(file).send().await?;
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await?;
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        assert!(msg.contains("nothing was imported"), "{msg}");
        let all = get_json(&d, "/api/v1/contacts").await?;
        assert_eq!(all["total"], 1, "the good card was not stored either");
    }
    Ok(())
}
