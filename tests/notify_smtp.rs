//! E-mail notifications (`smtp://`) against a real SMTP server on loopback
//! (tests/common/smtp.rs, Debian's aiosmtpd): STARTTLS and implicit TLS with a certificate
//! from a throwaway CA, a checked login, and the delivered mail parsed by Python's `email`
//! package. Also what a person sees when it goes wrong: a refused login (not retried, no
//! password), a refused recipient (not retried) and a deferred one (retried), nothing
//! listening or nothing answering (retried), a server without STARTTLS (refused before any
//! credential is sent) and a certificate nobody trusts.

mod common;

use std::time::Duration;

use holdfast::notify::{Message, SendError, Target};

use common::smtp::{Cert, Mode, PASSWORD, PASSWORD_IN_URL, SmtpServer, USER};

/// Each attempt's timeout, as a Notifier would give it.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `USER` as a URL's user part.
const USER_IN_URL: &str = "mailer%40example.com";

/// A failed run's message, with characters HTML must escape in its error line and link.
fn failed_run() -> Message {
    Message {
        errors: vec!["dump db: pg_dump: connection refused <on socket> & \"quoted\"".into()],
        link: Some("https://holdfast.example/api/v1/policies/nextcloud?x=1&y=2".into()),
        ..Message::example()
    }
}

/// Parses `url` and sends `message` through it, as the notifier does.
fn send(url: &str, message: &Message) -> Result<(), SendError> {
    send_within(url, message, TIMEOUT)
}

fn send_within(url: &str, message: &Message, timeout: Duration) -> Result<(), SendError> {
    common::smtp::trust_test_ca();
    let target = Target::parse(url).unwrap_or_else(|e| panic!("parsing the URL: {e}"));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(target.send(message, timeout))
}

/// The URL of `server` with the right login and `query`.
fn url(server: &SmtpServer, password_in_url: &str, query: &str) -> String {
    format!(
        "smtp://{USER_IN_URL}:{password_in_url}@127.0.0.1:{}/?{query}",
        server.port()
    )
}

fn part<'a>(parsed: &'a serde_json::Value, content_type: &str) -> &'a str {
    parsed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == content_type)
        .unwrap_or_else(|| panic!("no {content_type} part in {parsed:#}"))["text"]
        .as_str()
        .unwrap()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_mail_through_starttls_carries_the_title_both_parts_and_the_facts() {
    common::smtp::trust_test_ca();
    let server = SmtpServer::start(Mode::StartTls);
    let message = failed_run();
    let url = url(
        &server,
        PASSWORD_IN_URL,
        "from=holdfast@example.com&to=ops@example.com,%20oncall@example.com&fromname=holdfast%20on%20nas",
    );
    send(&url, &message).unwrap_or_else(|e| panic!("{e:?}{}", server.log_text()));

    let logins = server.logins();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0]["login"], USER);
    assert_eq!(logins[0]["ok"], true);
    assert_eq!(logins[0]["encrypted"], true, "the login went in clear");

    let received = server.received();
    assert_eq!(received.len(), 1, "{}", server.log_text());
    let mail = &received[0];
    assert_eq!(mail.mail_from, "holdfast@example.com");
    assert_eq!(mail.rcpt_tos, ["ops@example.com", "oncall@example.com"]);
    assert!(mail.authenticated);
    let raw = String::from_utf8_lossy(&mail.raw);
    assert!(!raw.contains(PASSWORD) && !raw.contains("s3cret"), "{raw}");

    let parsed = &mail.parsed;
    let headers = &parsed["headers"];
    assert_eq!(headers["subject"], "BackupPolicy/nextcloud failed on nas");
    assert_eq!(headers["from"], "holdfast on nas <holdfast@example.com>");
    assert_eq!(headers["to"], "ops@example.com, oncall@example.com");
    assert_eq!(headers["date"], "Tue, 24 Nov 2026 03:00:42 +0000");
    assert_eq!(headers["x-holdfast-event"], "Failed");
    let id = headers["message-id"].as_str().unwrap();
    assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
    assert_eq!(
        parsed["content_type"], "multipart/alternative",
        "{parsed:#}"
    );

    let plain = part(parsed, "text/plain");
    for fact in [
        "The backup failed; the stack was started again.",
        "Object: BackupPolicy/nextcloud",
        "Host: nas",
        "Phase: Failed",
        "Downtime: 12.0s",
        "Stored: 2.0 GiB",
        "Repository: default",
        "Run: nextcloud-20261124-030000",
        "- dump db: pg_dump: connection refused <on socket> & \"quoted\"",
        "https://holdfast.example/api/v1/policies/nextcloud?x=1&y=2",
    ] {
        assert!(plain.contains(fact), "{fact:?} missing from:\n{plain}");
    }

    let html = part(parsed, "text/html");
    assert!(html.trim_start().starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("<title>BackupPolicy/nextcloud failed on nas</title>"),
        "{html}"
    );
    assert!(html.contains("<b>Host:</b> nas"), "{html}");
    assert!(
        html.contains("connection refused &lt;on socket&gt; &amp; &quot;quoted&quot;"),
        "{html}"
    );
    assert!(!html.contains("<on socket>"), "{html}");
    assert!(
        html.contains("href=\"https://holdfast.example/api/v1/policies/nextcloud?x=1&amp;y=2\""),
        "{html}"
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn implicit_tls_delivers_with_shoutrrrs_spelling() {
    common::smtp::trust_test_ca();
    let server = SmtpServer::start(Mode::Tls);
    let url = url(
        &server,
        PASSWORD_IN_URL,
        "fromAddress=holdfast@example.com&toAddresses=ops@example.com&encryption=ImplicitTLS&subject=%5Bbackups%5D",
    );
    send(&url, &failed_run()).unwrap_or_else(|e| panic!("{e:?}{}", server.log_text()));
    let received = server.received();
    assert_eq!(received.len(), 1, "{}", server.log_text());
    assert_eq!(
        received[0].parsed["headers"]["subject"],
        "[backups] BackupPolicy/nextcloud failed on nas"
    );
    assert_eq!(
        received[0].parsed["headers"]["from"],
        "holdfast <holdfast@example.com>"
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_relay_without_login_takes_mail_in_clear_when_told_so() {
    common::smtp::trust_test_ca();
    let server = SmtpServer::start(Mode::Plain);
    let url = format!(
        "smtp://127.0.0.1:{}/?from=holdfast@example.com&to=ops@example.com&encryption=None",
        server.port()
    );
    send(&url, &failed_run()).unwrap_or_else(|e| panic!("{e:?}{}", server.log_text()));
    let received = server.received();
    assert_eq!(received.len(), 1, "{}", server.log_text());
    assert!(!received[0].authenticated);
    assert!(server.logins().is_empty());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_wrong_password_is_a_refused_login_never_retried_nor_shown() {
    common::smtp::trust_test_ca();
    let server = SmtpServer::start(Mode::StartTls);
    let url = url(
        &server,
        "not-the%20password",
        "from=holdfast@example.com&to=ops@example.com",
    );
    let err = send(&url, &failed_run()).unwrap_err();
    assert!(!err.retry, "{err:?}");
    assert!(err.message.contains("refused the login"), "{err:?}");
    assert!(err.message.contains(USER), "{err:?}");
    assert!(err.message.contains("535"), "{err:?}");
    assert!(
        !err.message.contains("not-the") && !err.message.contains("password@"),
        "{err:?}"
    );
    let logins = server.logins();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0]["ok"], false);
    assert_eq!(logins[0]["encrypted"], true);
    assert!(server.received().is_empty());
}

#[test]
fn nothing_listening_is_retried() {
    common::smtp::trust_test_ca();
    let port = common::free_ports(1)[0];
    let url = format!(
        "smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{port}/?from=holdfast@example.com&to=ops@example.com"
    );
    let err = send(&url, &failed_run()).unwrap_err();
    assert!(err.retry, "{err:?}");
    assert!(
        err.message.contains(&format!("127.0.0.1:{port}")),
        "{err:?}"
    );
    assert!(err.message.contains("could not connect"), "{err:?}");
    assert!(!err.message.contains("s3cret"), "{err:?}");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_server_without_starttls_is_refused_before_any_credential() {
    common::smtp::trust_test_ca();
    let server = SmtpServer::start(Mode::Plain);
    let url = url(
        &server,
        PASSWORD_IN_URL,
        "from=holdfast@example.com&to=ops@example.com",
    );
    let err = send(&url, &failed_run()).unwrap_err();
    assert!(!err.retry, "{err:?}");
    assert!(err.message.contains("does not offer STARTTLS"), "{err:?}");
    assert!(
        server.logins().is_empty(),
        "credentials were sent in clear: {:?}",
        server.logins()
    );
    assert!(server.received().is_empty());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_untrusted_certificate_fails_starttls_with_the_reason() {
    common::smtp::trust_test_ca();
    let server = SmtpServer::start_with(Mode::StartTls, Cert::SelfSigned);
    let url = url(
        &server,
        PASSWORD_IN_URL,
        "from=holdfast@example.com&to=ops@example.com",
    );
    let err = send(&url, &failed_run()).unwrap_err();
    assert!(!err.retry, "{err:?}");
    assert!(err.message.contains("STARTTLS failed"), "{err:?}");
    assert!(err.message.contains("certificate"), "{err:?}");
    assert!(server.logins().is_empty());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_refused_recipient_is_not_retried_and_a_deferred_one_is() {
    common::smtp::trust_test_ca();
    let server = SmtpServer::start(Mode::StartTls);
    let refused = send(
        &url(
            &server,
            PASSWORD_IN_URL,
            "from=holdfast@example.com&to=ops@example.com,nobody@example.com",
        ),
        &failed_run(),
    )
    .unwrap_err();
    assert!(!refused.retry, "{refused:?}");
    assert!(
        refused.message.contains("refused the mail: 550"),
        "{refused:?}"
    );
    assert!(refused.message.contains("no such mailbox"), "{refused:?}");

    let deferred = send(
        &url(
            &server,
            PASSWORD_IN_URL,
            "from=holdfast@example.com&to=later@example.com",
        ),
        &failed_run(),
    )
    .unwrap_err();
    assert!(deferred.retry, "{deferred:?}");
    assert!(
        deferred.message.contains("deferred the mail: 451"),
        "{deferred:?}"
    );
    assert!(server.received().is_empty());
}

#[test]
fn a_server_that_never_answers_is_retried_after_the_timeout() {
    common::smtp::trust_test_ca();
    // Connections are queued by the kernel and never accepted: no greeting comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!(
        "smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{port}/?from=holdfast@example.com&to=ops@example.com"
    );
    let started = std::time::Instant::now();
    let err = send_within(&url, &failed_run(), Duration::from_secs(1)).unwrap_err();
    assert!(err.retry, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.message.contains(&format!("127.0.0.1:{port}")),
        "{err:?}"
    );
    assert!(
        err.message.contains("did not take the mail within")
            || err.message.contains("did not answer in time"),
        "{err:?}"
    );
}
