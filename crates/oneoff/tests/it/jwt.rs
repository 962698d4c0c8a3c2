//! Signed identity assertions: a real JWKS endpoint on loopback, real ES256 keys, and every
//! way an assertion must be refused.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::TestServer;

struct Key {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, byte)| n | u32::from(*byte) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn new_key(kid: &str) -> Key {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref().to_vec();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || X || Y
    let jwk = json!({ "kty": "EC", "crv": "P-256", "kid": kid, "x": base64url(&point[1..33]), "y": base64url(&point[33..65]) });
    Key { kid: kid.into(), pkcs8, jwk }
}

fn sign(key: &Key, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A JWKS endpoint that answers every request with the current key set.
async fn jwks_server(keys: Arc<Mutex<Vec<Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = json!({ "keys": keys.lock().unwrap().clone() }).to_string();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let response = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

async fn whoami(server: &TestServer, assertion: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/whoami", server.url))
        .header("x-pomerium-jwt-assertion", assertion)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn pomerium_assertions_are_verified_against_the_jwks() {
    let first = new_key("k1");
    let keys = Arc::new(Mutex::new(vec![first.jwk.clone()]));
    let url = jwks_server(keys.clone()).await;
    let config = format!(
        "[auth]\nadmins = {{ groups = [\"platform\"] }}\n[[auth.jwt]]\nkind = \"pomerium\"\njwks_url = \"{url}\"\nissuer = \"authenticate.example.com\"\naudience = \"oneoff.example.com\"\n"
    );
    let server = TestServer::start(&config).await;
    let good = json!({ "iss": "authenticate.example.com", "aud": "oneoff.example.com", "email": "alice@example.com", "groups": ["platform", "eng"], "exp": now() + 300 });

    let (status, me) = whoami(&server, &sign(&first, good.clone())).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["user"].as_str(), me["source"].as_str(), me["admin"].as_bool()),
        (Some("alice@example.com"), Some("jwt:x-pomerium-jwt-assertion"), Some(true))
    );

    let mut refused = Vec::new();
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 120);
    refused.push((sign(&first, expired), "expired"));
    let mut early = good.clone();
    early["nbf"] = json!(now() + 600);
    refused.push((sign(&first, early), "not valid yet"));
    let mut elsewhere = good.clone();
    elsewhere["aud"] = json!("other.example.com");
    refused.push((sign(&first, elsewhere), "another audience"));
    let mut foreign = good.clone();
    foreign["iss"] = json!("evil.example.com");
    refused.push((sign(&first, foreign), "another issuer"));
    let stranger = new_key("k1"); // same key id, different key
    refused.push((sign(&stranger, good.clone()), "signature does not verify"));
    let unknown = new_key("k9");
    refused.push((sign(&unknown, good.clone()), "unknown key id"));
    let unsigned =
        format!("{}.{}.", base64url(br#"{"alg":"none","typ":"JWT"}"#), base64url(good.to_string().as_bytes()));
    refused.push((unsigned, "not"));
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(first.jwk.to_string().as_bytes()),
    )
    .unwrap();
    refused.push((hmac, "HS256 is not accepted"));
    for (assertion, reason) in refused {
        let (status, body) = whoami(&server, &assertion).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(reason), "{reason}: {body}");
    }

    // Key rotation: a new key id is fetched on first sight (after the refetch interval).
    let second = new_key("k2");
    keys.lock().unwrap().push(second.jwk.clone());
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let (status, me) = whoami(&server, &sign(&second, good)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
}
