//! The message pipeline end to end: webhook → conversation → assistant turn → Graph API → statuses.

mod support;

use support::*;
use wacrm::conversations::{Author, MessageStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_text_webhook_gets_exactly_one_reply_whose_status_follows_the_webhooks() {
    let mut app = TestApp::start(Options::default()).await;
    let tenant = app.tenant_with_channel("acme", "106540352242922").await;

    let body = text_webhook(
        "106540352242922",
        "6281234567890",
        "wamid.TEST1",
        "Do you open on Sunday?",
    );
    assert_eq!(app.post_signed(&body).await.0, 200);

    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["to"], "6281234567890");
    assert_eq!(
        sent[0].body["text"]["body"],
        "You said: Do you open on Sunday?"
    );

    // The fake posts sent → delivered → read status webhooks back; the stored reply follows them.
    let reply = app
        .wait_for(WAIT, |app| {
            let c = app.conversations(tenant).pop()?;
            app.messages(tenant, &c)
                .into_iter()
                .find(|m| m.author == Author::Assistant && m.status == MessageStatus::Read)
        })
        .await;
    assert_eq!(reply.wamid.as_deref(), Some(sent[0].wamid.as_str()));
    assert_eq!(app.graph.sent().len(), 1);
    app.stop().await;
}
