//! Interoperability with the Standard Webhooks reference libraries: a delivery signed here is
//! verified by the Python (`standardwebhooks` from PyPI) and JavaScript (`standardwebhooks` from
//! npm) libraries, and a message they sign is verified here.
//!
//! `.ci/run` installs both. Elsewhere these tests print that they were skipped when a library is
//! missing, unless `FERMION_REQUIRE_INTEROP` is set. The Node.js library is looked up in
//! `FERMION_INTEROP_NODE_PATH` (default `target/interop/node/node_modules`).

mod common;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::receiver::TestReceiver;
use fermion_webhooks::{
    DispatchConfig, Endpoint, EventKind, EventPayload, MemoryLogStore, Receiver, SigningSecret,
    WebhookEvent, WebhookSecret,
};
use http::HeaderMap;

/// Which reference implementation runs a script.
#[derive(Clone, Copy, Debug)]
enum Reference {
    Python,
    Node,
}

impl Reference {
    /// The command running `script`, or `None` (after saying so) when the library is missing.
    fn command(self, script: &str) -> Option<Command> {
        let probe = match self {
            Reference::Python => "import standardwebhooks",
            Reference::Node => "require('standardwebhooks')",
        };
        let available = self
            .bare(probe)
            .output()
            .is_ok_and(|output| output.status.success());
        if !available {
            assert!(
                std::env::var_os("FERMION_REQUIRE_INTEROP").is_none(),
                "the {self:?} standardwebhooks library is missing; .ci/run installs it"
            );
            eprintln!("skipped: the {self:?} standardwebhooks library is not installed");
            return None;
        }
        Some(self.bare(script))
    }

    /// The interpreter running `script`, with the library on its path.
    fn bare(self, script: &str) -> Command {
        let mut command = match self {
            Reference::Python => Command::new("python3"),
            Reference::Node => Command::new("node"),
        };
        match self {
            Reference::Python => command.args(["-c", script]),
            Reference::Node => {
                let modules = std::env::var_os("FERMION_INTEROP_NODE_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                            .join("target/interop/node/node_modules")
                    });
                command.args(["-e", script]).env("NODE_PATH", modules)
            }
        };
        command
    }
}

/// Verifies the message in the environment (`SECRET`, `BODY`, `WEBHOOK_*`) and prints `ok`.
const PYTHON_VERIFY: &str = r#"
import os
from standardwebhooks.webhooks import Webhook
headers = {name: os.environ[name.upper().replace("-", "_")]
           for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
Webhook(os.environ["SECRET"]).verify(os.environ["BODY"].encode(), headers)
print("ok")
"#;

const NODE_VERIFY: &str = r#"
const { Webhook } = require("standardwebhooks");
const e = process.env;
new Webhook(e.SECRET).verify(Buffer.from(e.BODY), {
  "webhook-id": e.WEBHOOK_ID, "webhook-timestamp": e.WEBHOOK_TIMESTAMP,
  "webhook-signature": e.WEBHOOK_SIGNATURE,
});
console.log("ok");
"#;

/// Signs `BODY` as message `ID`, now, and prints the timestamp and the signature.
const PYTHON_SIGN: &str = r#"
import os
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook
now = datetime.now(tz=timezone.utc).replace(microsecond=0)
print(int(now.timestamp()))
print(Webhook(os.environ["SECRET"]).sign(os.environ["ID"], now, os.environ["BODY"].encode()))
"#;

const NODE_SIGN: &str = r#"
const { Webhook } = require("standardwebhooks");
const e = process.env;
const now = new Date(Math.floor(Date.now() / 1000) * 1000);
console.log(Math.floor(now.getTime() / 1000));
console.log(new Webhook(e.SECRET).sign(e.ID, now, Buffer.from(e.BODY)));
"#;

/// One delivery signed by a dispatcher with `key`, as the receiver got it.
async fn signed_delivery(key: &SigningSecret) -> (HeaderMap, String) {
    let receiver = TestReceiver::ok().await;
    let endpoint = Endpoint::new("crm", receiver.url(), WebhookSecret::new("s").unwrap())
        .unwrap()
        .signed_with(key.clone());
    let mut config = DispatchConfig::default();
    config.poll_interval = Duration::from_millis(20);
    let dispatcher = support::dispatcher_for(Arc::new(MemoryLogStore::new()), endpoint, config);
    support::emit_until_final(&dispatcher, EventKind::PaidCourseSale).await;
    let request = receiver.received().remove(0);
    (request.headers, String::from_utf8(request.body).unwrap())
}

async fn our_delivery_verifies_with(reference: Reference, script: &str) {
    let Some(mut command) = reference.command(script) else {
        return;
    };
    let key = SigningSecret::generate().unwrap();
    let (headers, body) = signed_delivery(&key).await;
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let variable = name.to_uppercase().replace('-', "_");
        command.env(variable, headers[name].to_str().unwrap());
    }
    let output = command
        .env("SECRET", key.expose_secret())
        .env("BODY", &body)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "ok",
        "{reference:?} refused our signature: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // And it refuses a body changed by one byte, so the "ok" above means something.
    let mut tampered = reference.command(script).unwrap();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let variable = name.to_uppercase().replace('-', "_");
        tampered.env(variable, headers[name].to_str().unwrap());
    }
    let output = tampered
        .env("SECRET", key.expose_secret())
        .env(
            "BODY",
            body.replacen("paid-course-sale", "paid-course-salf", 1),
        )
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "{reference:?} accepted a tampered body"
    );
}

fn their_signature_verifies_here(reference: Reference, script: &str) {
    let Some(mut command) = reference.command(script) else {
        return;
    };
    let key = SigningSecret::generate().unwrap();
    let event = WebhookEvent::new(EventPayload::sample(EventKind::PaymentFailed));
    let body = event.to_json();
    let output = command
        .env("SECRET", key.expose_secret())
        .env("ID", &event.event_unique_id)
        .env("BODY", &body)
        .output()
        .unwrap();
    let printed = String::from_utf8(output.stdout).unwrap();
    let mut lines = printed.lines();
    let (Some(timestamp), Some(signature)) = (lines.next(), lines.next()) else {
        panic!(
            "{reference:?} printed no signature: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", event.event_unique_id.parse().unwrap());
    headers.insert("webhook-timestamp", timestamp.parse().unwrap());
    headers.insert("webhook-signature", signature.parse().unwrap());
    let receiver = Receiver::signed(key).build();
    let received = receiver.receive(&headers, body.as_bytes()).unwrap();
    assert_eq!(received.event_unique_id, event.event_unique_id);
    let other = Receiver::signed(SigningSecret::generate().unwrap()).build();
    assert!(other.receive(&headers, body.as_bytes()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_signed_here_verifies_with_the_python_reference_library() {
    our_delivery_verifies_with(Reference::Python, PYTHON_VERIFY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_signed_here_verifies_with_the_javascript_reference_library() {
    our_delivery_verifies_with(Reference::Node, NODE_VERIFY).await;
}

#[test]
fn a_message_signed_by_the_python_reference_library_verifies_here() {
    their_signature_verifies_here(Reference::Python, PYTHON_SIGN);
}

#[test]
fn a_message_signed_by_the_javascript_reference_library_verifies_here() {
    their_signature_verifies_here(Reference::Node, NODE_SIGN);
}

#[test]
fn the_specifications_test_vector_is_signed_alike_here_and_by_both_libraries() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    let ours = fermion_webhooks::signature::sign(
        &[SigningSecret::new(secret).unwrap()],
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(ours, expected);
    let scripts = [
        (
            Reference::Python,
            r#"
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook
print(Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign(
    "msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(1614265330, tz=timezone.utc),
    b'{"test": 2432232314}'))
"#,
        ),
        (
            Reference::Node,
            r#"
const { Webhook } = require("standardwebhooks");
console.log(new Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign(
  "msg_p5jXN8AQM9LWM0D4loKWxJek", new Date(1614265330 * 1000), '{"test": 2432232314}'));
"#,
        ),
    ];
    for (reference, script) in scripts {
        let Some(mut command) = reference.command(script) else {
            continue;
        };
        let output = command.output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            expected,
            "{reference:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
