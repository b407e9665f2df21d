//! `holdfast notify test` against a real HTTP receiver (see `common::receiver`):
//! each service's request is checked against what the service's API documents (path,
//! method, auth header, content type, field names), and no secret of a URL ever shows in
//! what the command prints. The fixed-host services (Discord, Slack, Telegram, Pushover)
//! are pointed at the receiver with `HOLDFAST_TEST_API_BASE`, which only test builds
//! read.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::receiver::Receiver;
use common::{holdfast, run, stderr, stdout};
use serde_json::Value;

/// A specs folder with the Notifier `name`, its URL read from `NOTIFY_URL`.
fn specs(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("notifiers.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata:
  name: {name}
spec:
  url: {{fromEnv: NOTIFY_URL}}
"
        ),
    )
    .unwrap();
    dir
}

/// `holdfast notify test ops` with `url` in `NOTIFY_URL` and the fixed-host services
/// pointed at `receiver`.
fn notify_test(url: &str, receiver: &Receiver, extra: &[&str]) -> Output {
    let specs = specs("ops");
    notify_test_in(specs.path(), "ops", url, receiver, extra)
}

fn notify_test_in(
    specs: &Path,
    name: &str,
    url: &str,
    receiver: &Receiver,
    extra: &[&str],
) -> Output {
    run(holdfast()
        .args(["notify", "test", name, "--specs"])
        .arg(specs)
        .args(extra)
        .env("NOTIFY_URL", url)
        .env(
            "HOLDFAST_TEST_API_BASE",
            format!("http://{}", receiver.host()),
        ))
}

/// The command succeeded, said so, and printed none of `secrets`.
fn assert_sent(out: &Output, secrets: &[&str]) {
    let (o, e) = (stdout(out), stderr(out));
    assert!(out.status.success(), "stdout: {o}\nstderr: {e}");
    assert!(o.starts_with("sent a test message to "), "{o}");
    for secret in secrets {
        assert!(
            !o.contains(secret) && !e.contains(secret),
            "{secret} printed:\n{o}\n{e}"
        );
    }
}

fn title() -> String {
    format!(
        "holdfast test notification from {}",
        holdfast::settings::machine_host()
    )
}

fn json_body(request: &Value) -> Value {
    assert_eq!(request["headers"]["content-type"], "application/json");
    serde_json::from_str(request["body"].as_str().unwrap()).unwrap()
}

/// The only request received.
fn one(receiver: &Receiver) -> Value {
    let requests = receiver.records();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    requests.into_iter().next().unwrap()
}

#[test]
fn ntfy_gets_plain_text_with_x_headers_and_basic_auth() {
    let receiver = Receiver::start();
    let url = format!(
        "ntfy://alice:pw-Secret1@{}/backups?scheme=http&tags=nas",
        receiver.host()
    );
    let out = notify_test(&url, &receiver, &[]);
    assert_sent(&out, &["pw-Secret1"]);
    assert!(
        stdout(&out).contains("ntfy://alice:***@127.0.0.1"),
        "{}",
        stdout(&out)
    );
    let r = one(&receiver);
    assert_eq!(
        (r["method"].as_str(), r["path"].as_str()),
        (Some("POST"), Some("/backups"))
    );
    let h = &r["headers"];
    assert_eq!(h["x-title"], title());
    assert_eq!(h["x-priority"], "3");
    assert_eq!(h["x-tags"], "information_source,nas");
    // base64("alice:pw-Secret1")
    assert_eq!(h["authorization"], "Basic YWxpY2U6cHctU2VjcmV0MQ==");
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert!(r["body"].as_str().unwrap().contains("holdfast notify test"));
}

#[test]
fn gotify_gets_markdown_json_with_the_app_token_header() {
    let receiver = Receiver::start();
    let url = format!(
        "gotify://{}/gotify/AppTok3nSecret?disabletls=yes",
        receiver.host()
    );
    let out = notify_test(&url, &receiver, &[]);
    assert_sent(&out, &["AppTok3nSecret"]);
    let r = one(&receiver);
    assert_eq!(r["path"], "/gotify/message");
    assert_eq!(r["headers"]["x-gotify-key"], "AppTok3nSecret");
    let body = json_body(&r);
    assert_eq!(body["title"], title());
    assert!(body["message"].as_str().unwrap().contains("**Host:**"));
    assert_eq!(body["priority"], 2);
    assert_eq!(
        body["extras"]["client::display"]["contentType"],
        "text/markdown"
    );
}

#[test]
fn discord_gets_an_embed_on_its_webhook_path() {
    let receiver = Receiver::start();
    let out = notify_test("discord://DiscTok3nSecret@998877665544", &receiver, &[]);
    assert_sent(&out, &["DiscTok3nSecret", "998877665544"]);
    let r = one(&receiver);
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], "/api/webhooks/998877665544/DiscTok3nSecret");
    let body = json_body(&r);
    assert_eq!(body["username"], "holdfast");
    let embed = &body["embeds"][0];
    assert_eq!(embed["title"], title());
    assert_eq!(embed["color"], 0x3498DB);
    assert_eq!(embed["fields"][0]["name"], "Host");
    assert!(embed["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn slack_webhooks_and_bots_get_blocks() {
    let receiver = Receiver::start();
    let out = notify_test(
        "slack://hook:T0AB-B0CD-SlackSecret9@webhook",
        &receiver,
        &[],
    );
    assert_sent(&out, &["SlackSecret9"]);
    let r = one(&receiver);
    assert_eq!(r["path"], "/services/T0AB/B0CD/SlackSecret9");
    let body = json_body(&r);
    assert_eq!(body["text"], title());
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(body["blocks"][1]["text"]["type"], "mrkdwn");
    assert_eq!(body["blocks"][2]["fields"][0]["type"], "mrkdwn");

    let bot = Receiver::start();
    let out = notify_test("slack://xoxb:111-222-BotSecret9@C0CHAN", &bot, &[]);
    assert_sent(&out, &["BotSecret9"]);
    let r = one(&bot);
    assert_eq!(r["path"], "/api/chat.postMessage");
    assert_eq!(
        r["headers"]["authorization"],
        "Bearer xoxb-111-222-BotSecret9"
    );
    let body = json_body(&r);
    assert_eq!(body["channel"], "C0CHAN");
    assert_eq!(body["text"], title());
    assert!(body["blocks"].is_array());
}

#[test]
fn slacks_ok_false_is_a_failure_in_slacks_words() {
    let receiver = Receiver::answering(200, r#"{"ok":false,"error":"channel_not_found"}"#);
    let out = notify_test("slack://xoxb:111-222-BotSecret9@C0CHAN", &receiver, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("channel_not_found"), "{e}");
    assert!(
        !e.contains("BotSecret9") && !stdout(&out).contains("BotSecret9"),
        "{e}"
    );
    // A refusal is not retried.
    assert_eq!(receiver.records().len(), 1);
}

#[test]
fn telegram_gets_one_html_message_per_chat() {
    let receiver = Receiver::start();
    let out = notify_test(
        "telegram://12345:TgSecret-9@telegram?chats=@backups,-10042",
        &receiver,
        &[],
    );
    assert_sent(&out, &["TgSecret-9"]);
    let requests = receiver.records();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for r in &requests {
        assert_eq!(r["path"], "/bot12345:TgSecret-9/sendMessage");
        let body = json_body(r);
        assert_eq!(body["parse_mode"], "HTML");
        assert_eq!(body["disable_web_page_preview"], true);
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with(&format!("<b>{}</b>", title()))
        );
    }
    assert_eq!(json_body(&requests[0])["chat_id"], "@backups");
    assert_eq!(json_body(&requests[1])["chat_id"], -10042);
}

#[test]
fn pushover_gets_a_form_with_token_user_and_html() {
    let receiver = Receiver::start();
    let out = notify_test(
        "pushover://shoutrrr:PoTok3nSecret@PoUs3rKey/?devices=phone",
        &receiver,
        &[],
    );
    assert_sent(&out, &["PoTok3nSecret", "PoUs3rKey"]);
    let r = one(&receiver);
    assert_eq!(
        (r["method"].as_str(), r["path"].as_str()),
        (Some("POST"), Some("/1/messages.json"))
    );
    assert_eq!(
        r["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    let fields: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(r["body"].as_str().unwrap().as_bytes())
            .into_owned()
            .collect();
    assert_eq!(fields["token"], "PoTok3nSecret");
    assert_eq!(fields["user"], "PoUs3rKey");
    assert_eq!(fields["title"], title());
    assert_eq!(fields["html"], "1");
    assert_eq!(fields["priority"], "-1");
    assert_eq!(fields["device"], "phone");
    assert!(fields["message"].contains("<b>Host:</b>"));
    assert!(fields["timestamp"].parse::<i64>().is_ok());
}

#[test]
fn apprise_gets_its_notify_api_with_a_key_or_urls() {
    let receiver = Receiver::start();
    let url = format!("apprise://{}/AppriseKey9?scheme=http", receiver.host());
    let out = notify_test(&url, &receiver, &[]);
    assert_sent(&out, &["AppriseKey9"]);
    let r = one(&receiver);
    assert_eq!(r["path"], "/notify/AppriseKey9");
    let body = json_body(&r);
    assert_eq!(body["title"], title());
    assert_eq!(body["type"], "info");
    assert_eq!(body["format"], "markdown");
    assert!(
        body["body"]
            .as_str()
            .unwrap()
            .contains("holdfast notify test")
    );

    let stateless = Receiver::start();
    let url = format!(
        "apprise://{}/?scheme=http&urls=tgram://bottok9/chat",
        stateless.host()
    );
    let out = notify_test(&url, &stateless, &[]);
    assert_sent(&out, &["bottok9"]);
    let r = one(&stateless);
    assert_eq!(r["path"], "/notify");
    assert_eq!(json_body(&r)["urls"], "tgram://bottok9/chat");
}

#[test]
fn heartbeats_get_a_plain_success_ping() {
    let receiver = Receiver::start();
    let uuid = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";
    let url = format!("healthchecks://{}/ping/{uuid}?scheme=http", receiver.host());
    let out = notify_test(&url, &receiver, &[]);
    assert_sent(&out, &[uuid]);
    let r = one(&receiver);
    assert_eq!(
        (r["method"].as_str(), r["query"].as_str()),
        (Some("POST"), Some(""))
    );
    assert_eq!(r["path"], format!("/ping/{uuid}"));

    let kuma = Receiver::start();
    let url = format!(
        "uptime-kuma://{}/api/push/KumaTok9?scheme=http",
        kuma.host()
    );
    let out = notify_test(&url, &kuma, &[]);
    assert_sent(&out, &["KumaTok9"]);
    let r = one(&kuma);
    assert_eq!(r["method"], "GET");
    assert_eq!(r["path"], "/api/push/KumaTok9");
    let query: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(r["query"].as_str().unwrap().as_bytes())
            .into_owned()
            .collect();
    assert_eq!(query["status"], "up");
    assert_eq!(query["msg"], title());
}

#[test]
fn a_server_error_fails_after_three_attempts_naming_the_status_and_no_secret() {
    let receiver = Receiver::answering(500, "upstream broke");
    let url = format!("gotify://{}/AppTok3nSecret?scheme=http", receiver.host());
    let out = notify_test(&url, &receiver, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("after 3 attempts"), "{e}");
    assert!(
        e.contains("500 Internal Server Error: upstream broke"),
        "{e}"
    );
    assert!(e.contains("gotify://127.0.0.1"), "{e}");
    assert!(
        !e.contains("AppTok3nSecret") && !stdout(&out).contains("AppTok3nSecret"),
        "{e}"
    );
    assert_eq!(receiver.records().len(), 3);

    let out = notify_test(&url, &receiver, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["sent"], false);
    assert_eq!(json["attempts"], 3);
    assert_eq!(json["notifier"], "ops");
    assert!(
        json["url"].as_str().unwrap().ends_with("/***?scheme=http"),
        "{json}"
    );
    assert!(json["error"].as_str().unwrap().contains("500"), "{json}");
}

#[test]
fn no_answer_is_retried_and_json_says_what_was_sent() {
    let receiver = Receiver::start();
    let url = format!("ntfy://:tk_Secret5@{}/t?scheme=http", receiver.host());
    let out = notify_test(&url, &receiver, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["sent"], true);
    assert_eq!(json["attempts"], 1);
    assert_eq!(json["error"], Value::Null);
    assert_eq!(
        json["url"],
        format!("ntfy://:***@{}/t?scheme=http", receiver.host())
    );
    assert_eq!(
        one(&receiver)["headers"]["authorization"],
        "Bearer tk_Secret5"
    );

    // Nothing listens on the port of a stopped receiver.
    let host = receiver.host();
    drop(receiver);
    let silent = Receiver::start();
    let url = format!("ntfy://:tk_Secret5@{host}/t?scheme=http");
    let out = notify_test(&url, &silent, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let e = stderr(&out);
    assert!(e.contains("after 3 attempts: could not connect"), "{e}");
    assert!(!e.contains("tk_Secret5"), "{e}");
}

#[test]
fn a_wrong_name_gets_a_did_you_mean_and_a_bad_url_says_where_it_came_from() {
    let receiver = Receiver::start();
    let specs = specs("ops-chat");
    let out = notify_test_in(specs.path(), "ops-chta", "ntfy://h/t", &receiver, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no Notifier named `ops-chta`"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("ops-chat"), "{}", stderr(&out));
    let out = notify_test_in(
        specs.path(),
        "ops-chat",
        "discord://Secret77@not-digits",
        &receiver,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("the environment variable NOTIFY_URL"), "{e}");
    assert!(e.contains("not all digits"), "{e}");
    assert!(!e.contains("Secret77"), "{e}");
    assert!(receiver.records().is_empty());
}
