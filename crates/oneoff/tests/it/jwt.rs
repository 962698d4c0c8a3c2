//! Signed identity assertions: a real JWKS endpoint (and an ALB-style PEM key server) on
//! loopback, real ES256 keys, and every way an assertion must be refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{eventually, TestServer};

pub(crate) struct Key {
    pub(crate) kid: String,
    pub(crate) pkcs8: Vec<u8>,
    pub(crate) jwk: Value,
}

pub(crate) const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub(crate) const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn base64_with(alphabet: &[u8; 64], padded: bool, bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, byte)| n | u32::from(*byte) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if padded {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}

pub(crate) fn base64url(bytes: &[u8]) -> String {
    base64_with(BASE64URL, false, bytes)
}

pub(crate) fn new_key(kid: &str) -> Key {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref().to_vec();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || X || Y
    let jwk = json!({ "kty": "EC", "crv": "P-256", "kid": kid, "x": base64url(&point[1..33]), "y": base64url(&point[33..65]) });
    Key { kid: kid.into(), pkcs8, jwk }
}

pub(crate) fn sign(key: &Key, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A JWKS endpoint that answers every request with the current key set.
pub(crate) async fn jwks_server(keys: Arc<Mutex<Vec<Value>>>) -> String {
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
        "[auth]\nadmins = {{ groups = [\"platform\"] }}\n[[auth.jwt]]\nkind = \"pomerium\"\njwks_url = \"{url}\"\nissuer = \"authenticate.example.com\"\naudience = \"oneoff.example.com\"\nkey_refetch_interval = \"100ms\"\n"
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
    let assertion = sign(&second, good);
    eventually("the rotated key to verify", std::time::Duration::from_secs(10), || async {
        let (status, me) = whoami(&server, &assertion).await;
        (status == StatusCode::OK).then_some(()).ok_or_else(|| format!("{status} {me}"))
    })
    .await;
}

#[tokio::test]
async fn a_key_withdrawn_from_the_jwks_stops_verifying_at_the_next_refetch() {
    let (withdrawn, current) = (new_key("k-old"), new_key("k-new"));
    let keys = Arc::new(Mutex::new(vec![withdrawn.jwk.clone()]));
    let url = jwks_server(keys.clone()).await;
    let config = format!("[[auth.jwt]]\nkind = \"pomerium\"\njwks_url = \"{url}\"\nkey_refetch_interval = \"100ms\"\n");
    let server = TestServer::start(&config).await;
    let claims = json!({ "email": "alice@example.com", "exp": now() + 300 });
    let (old_token, new_token) = (sign(&withdrawn, claims.clone()), sign(&current, claims));
    let (status, me) = whoami(&server, &old_token).await;
    assert_eq!(status, StatusCode::OK, "{me}");

    // The issuer rotates: the old key (say, leaked) is gone from its JWKS.
    *keys.lock().unwrap() = vec![current.jwk.clone()];
    eventually("the new key to verify", std::time::Duration::from_secs(10), || async {
        let (status, me) = whoami(&server, &new_token).await;
        (status == StatusCode::OK).then_some(()).ok_or_else(|| format!("{status} {me}"))
    })
    .await;
    let (status, body) = whoami(&server, &old_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the withdrawn key still verifies: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("unknown key id `k-old`"), "{body}");
}

// ---------------------------------------------------------------------------------------
// AWS ALB: `x-amzn-oidc-data`, ES256, one PEM key per key id, the signer ARN in the header,
// and base64url segments *with* padding, signed as sent.

pub(crate) const ARN: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/oneoff/50dc6c495c0c9188";
pub(crate) const IDP: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example";

pub(crate) struct AlbKey {
    pub(crate) kid: String,
    pub(crate) pair: EcdsaKeyPair,
    pub(crate) pem: String,
}

pub(crate) fn new_alb_key(kid: &str) -> AlbKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // SubjectPublicKeyInfo of a P-256 key: a fixed DER prefix, then the uncompressed point.
    const SPKI_P256_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let der: Vec<u8> = SPKI_P256_PREFIX.iter().chain(pair.public_key().as_ref()).copied().collect();
    let body = base64_with(BASE64, true, &der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap()).collect();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"));
    AlbKey { kid: kid.into(), pair, pem }
}

/// A token the way an ALB makes it: `padded` segments, signed over the text as sent.
pub(crate) fn alb_token(key: &AlbKey, header: &Value, payload: &Value, padded: bool) -> String {
    let signed = format!(
        "{}.{}",
        base64_with(BASE64URL, padded, header.to_string().as_bytes()),
        base64_with(BASE64URL, padded, payload.to_string().as_bytes())
    );
    let signature = key.pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
    format!("{signed}.{}", base64_with(BASE64URL, padded, signature.as_ref()))
}

/// Serves `GET /{kid}` with that key's PEM (404 otherwise) and counts the requests.
pub(crate) async fn alb_key_server(keys: HashMap<String, String>, fetches: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let keys = Arc::new(keys);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (keys, fetches) = (keys.clone(), fetches.clone());
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let read = socket.read(&mut request).await.unwrap_or(0);
                fetches.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&request[..read]);
                let path = text.split(' ').nth(1).unwrap_or("/");
                let response = match keys.get(path.trim_start_matches('/')) {
                    Some(pem) => format!("HTTP/1.1 200 OK\r\ncontent-type: application/x-pem-file\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{pem}", pem.len()),
                    None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                };
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

async fn whoami_alb(server: &TestServer, data: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/whoami", server.url))
        .header("x-amzn-oidc-data", data)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn alb_assertions_are_verified_with_the_per_key_pem_and_the_signer_arn() {
    let key = new_alb_key("6ee0dca1-5f94-4a5b-a4c3-2b8a2b7b1a55");
    let fetches = Arc::new(AtomicUsize::new(0));
    let key_url = alb_key_server(HashMap::from([(key.kid.clone(), key.pem.clone())]), fetches.clone()).await;
    let config = format!(
        "[auth]\nadmins = {{ users = [\"alice@example.com\"] }}\n[[auth.jwt]]\nkind = \"alb\"\nsigner_arn = \"{ARN}\"\nkey_url = \"{key_url}\"\nissuer = \"{IDP}\"\ngroups_claim = \"cognito:groups\"\n"
    );
    let server = TestServer::start(&config).await;
    let header = json!({ "typ": "JWT", "kid": key.kid, "alg": "ES256", "iss": IDP, "client": "4fmvht22tjrgd7d3k3tghttct7", "signer": ARN, "exp": now() + 120 });
    let payload = json!({ "sub": "23d498b2-3031-70d2", "email": "alice@example.com", "cognito:groups": ["eng"], "exp": now() + 120, "iss": IDP });

    // What an ALB really sends: padded segments, signed with their padding.
    let padded = alb_token(&key, &header, &payload, true);
    assert!(padded.split('.').any(|segment| segment.ends_with('=')), "the test token must carry padding: {padded}");
    let (status, me) = whoami_alb(&server, &padded).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["user"].as_str(), me["source"].as_str(), me["admin"].as_bool(), me["groups"].clone()),
        (Some("alice@example.com"), Some("jwt:x-amzn-oidc-data"), Some(true), json!(["eng"]))
    );
    // Without padding (should AWS ever drop it) the same checks apply.
    let (status, me) = whoami_alb(&server, &alb_token(&key, &header, &payload, false)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "the key is fetched once, then cached by key id");

    let mut refused: Vec<(String, &str)> = Vec::new();
    let mut other_alb = header.clone();
    other_alb["signer"] = json!(ARN.replace("123456789012", "999999999999"));
    refused.push((alb_token(&key, &other_alb, &payload, true), "signed by another load balancer"));
    let mut no_signer = header.clone();
    no_signer.as_object_mut().unwrap().remove("signer");
    refused.push((alb_token(&key, &no_signer, &payload, true), "signed by another load balancer"));
    let mut expired = header.clone();
    expired["exp"] = json!(now() - 120);
    refused.push((alb_token(&key, &expired, &payload, true), "expired"));
    let mut expired_payload = payload.clone();
    expired_payload["exp"] = json!(now() - 120);
    refused.push((alb_token(&key, &header, &expired_payload, true), "expired"));
    let mut no_expiry = header.clone();
    no_expiry.as_object_mut().unwrap().remove("exp");
    refused.push((alb_token(&key, &no_expiry, &payload, true), "no expiry"));
    let mut foreign = header.clone();
    foreign["iss"] = json!("https://evil.example.com");
    refused.push((alb_token(&key, &foreign, &payload, true), "another issuer"));
    let mut unknown = header.clone();
    unknown["kid"] = json!("00000000-0000-0000-0000-000000000000");
    refused.push((alb_token(&key, &unknown, &payload, true), "unknown key id"));
    let mut traversal = header.clone();
    traversal["kid"] = json!("../admin");
    refused.push((alb_token(&key, &traversal, &payload, true), "no usable key id"));
    for algorithm in ["HS256", "ES384", "none"] {
        let mut other = header.clone();
        other["alg"] = json!(algorithm);
        refused.push((alb_token(&key, &other, &payload, true), "is not accepted (expected ES256)"));
    }
    // A stranger's key under our key id: the signature does not verify.
    let stranger = new_alb_key(&key.kid);
    refused.push((alb_token(&stranger, &header, &payload, true), "signature does not verify"));
    // Tampered payload: the signature of the real one, another user's claims.
    let genuine = alb_token(&key, &header, &payload, true);
    let mut parts: Vec<String> = genuine.split('.').map(str::to_string).collect();
    let mut mallory = payload.clone();
    mallory["email"] = json!("mallory@example.com");
    parts[1] = base64_with(BASE64URL, true, mallory.to_string().as_bytes());
    refused.push((parts.join("."), "signature does not verify"));
    // Padding stripped after signing changes the signed text.
    let stripped: Vec<&str> = genuine.split('.').map(|segment| segment.trim_end_matches('=')).collect();
    refused.push((stripped.join("."), "signature does not verify"));
    refused.push(("not.a.jwt.at-all".into(), "not a JWT"));
    refused.push(("%%%.e30.e30".into(), "not a JWT"));

    for (assertion, reason) in refused {
        let (status, body) = whoami_alb(&server, &assertion).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{reason}: {body}");
        assert!(message.starts_with("X-Amzn-Oidc-Data refused"), "{body}");
    }
    // The unknown key id was asked for once; asking again within the interval does not refetch.
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    let (status, _) = whoami_alb(&server, &alb_token(&key, &unknown, &payload, true)).await;
    assert_eq!((status, fetches.load(Ordering::SeqCst)), (StatusCode::UNAUTHORIZED, 2));
}
