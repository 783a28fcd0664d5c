use super::*;
use crate::config::Secret;

fn open(dir: &std::path::Path) -> (Store, MasterKey) {
    let store = Store::open(&dir.join("t.redb"), 16, Box::new(|_| {})).unwrap();
    let key = MasterKey::load_or_create(&dir.join("master.key")).unwrap();
    (store, key)
}

fn cloud(phone_number_id: &str) -> NewChannel {
    NewChannel {
        name: "Main number".into(),
        outlet: None,
        kind: NewChannelKind::CloudApi {
            phone_number_id: phone_number_id.into(),
            waba_id: "102290129340398".into(),
            display_phone_number: "15550783881".into(),
            api_version: "v21.0".into(),
            access_token: Secret::new("EAAG-secret-token"),
            app_secret: Secret::new("app-secret"),
            verify_token: Secret::new("verify-me"),
        },
    }
}

#[tokio::test]
async fn channels_route_by_phone_number_and_keep_secrets_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = open(dir.path());
    let t = create_tenant(
        &store,
        NewTenant {
            slug: "acme".into(),
            name: "Acme".into(),
            time_zone: "Asia/Jakarta".into(),
        },
    )
    .await
    .unwrap();
    let c = add_channel(&store, &key, t.id, cloud("106540352242922"))
        .await
        .unwrap();
    let routed = route_phone_number(&store, "106540352242922")
        .unwrap()
        .unwrap();
    assert_eq!((routed.tenant.id, routed.channel.id), (t.id, c.id));
    let secrets = channel_secrets(&key, t.id, &routed.channel)
        .unwrap()
        .unwrap();
    assert_eq!(secrets.access_token, "EAAG-secret-token");
    assert_eq!(secrets.app_secret, "app-secret");
    // Nothing in the database file holds the token in clear.
    drop(store);
    let raw = std::fs::read(dir.path().join("t.redb")).unwrap();
    assert!(!raw.windows(17).any(|w| w == b"EAAG-secret-token"));
    assert!(verify_token_known_for_test(dir.path(), "verify-me").await);
}

async fn verify_token_known_for_test(dir: &std::path::Path, token: &str) -> bool {
    for _ in 0..100 {
        if let Ok(store) = Store::open(&dir.join("t.redb"), 16, Box::new(|_| {})) {
            return verify_token_known(&store, token).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("store did not reopen");
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_half_created() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = open(dir.path());
    for (slug, tz) in [("A!", "UTC"), ("ok-slug", "Mars/Olympus")] {
        let err = create_tenant(
            &store,
            NewTenant {
                slug: slug.into(),
                name: "x".into(),
                time_zone: tz.into(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "invalid_input");
    }
    let t = create_tenant(
        &store,
        NewTenant {
            slug: "acme".into(),
            name: "Acme".into(),
            time_zone: "UTC".into(),
        },
    )
    .await
    .unwrap();
    let dup = create_tenant(
        &store,
        NewTenant {
            slug: "acme".into(),
            name: "Again".into(),
            time_zone: "UTC".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(dup.code(), "conflict");
    add_channel(&store, &key, t.id, cloud("111")).await.unwrap();
    let err = add_channel(&store, &key, t.id, cloud("111"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    let err = add_channel(&store, &key, t.id, cloud("12ab"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    assert_eq!(list_channels(&store, t.id).unwrap().len(), 1);
    assert_eq!(list_tenants(&store).unwrap().len(), 1);
}
