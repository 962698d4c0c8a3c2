//! Verifying signed identity assertions (Cloudflare Access, Pomerium, AWS ALB, any JWKS issuer).
//!
//! Keys come from each provider's JWKS URL (or, for an AWS ALB, one PEM file per key id) and
//! are cached by key id; an unknown key id triggers a refetch (key rotation), rate-limited
//! per provider (`key_refetch_interval`, 10 s by default) so a flood of forged key ids cannot
//! hammer the issuer. A refetched JWKS *replaces* the cached set, so a key the issuer
//! withdrew stops verifying at the next refetch, and a set older than [`KEY_SET_MAX_AGE`] is
//! refetched even when no new key id asks for it. An ALB key is fetched again past that age
//! too, and evicted when its URL then answers 404. A failed fetch keeps the keys as they were:
//! an unreachable issuer must not log everyone out. Only the provider's asymmetric algorithms are accepted: `none` and HS256 (a
//! public key misused as an HMAC secret) never verify.
//!
//! ALB tokens are not quite JWTs: their segments are base64url *with* `=` padding, which
//! JWT libraries reject, and the ALB signs the segments as sent, padding included. So they
//! are checked here by hand: header fields first (`alg`, `signer`, `kid`), then the ES256
//! signature over the exact `header.payload` text received, then expiry and issuer.
//!
//! For both, `jsonwebtoken` (or `crypto::verify`) only checks signatures; the claim rules are
//! ours and the same for every kind: `exp` required, `exp`/`nbf` numbers, a configured
//! `issuer` or `audience` present and matching, `iss` one string, no `crit` extension.

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oneoff_core::auth::{JwtProvider, KeySource};
use serde_json::Value;

/// Cached keys older than this are fetched again before use, so a withdrawn key stops
/// verifying even when no token with a new key id comes to trigger a refetch.
const KEY_SET_MAX_AGE: Duration = Duration::from_secs(300);
/// ALB keys are fetched one key id at a time: at most this many fetches per
/// `key_refetch_interval` and provider, so forged key ids cannot make the server hammer AWS.
/// A sustained stream of them can use up this budget and delay a real key rotation, which
/// is one more reason the app must only be reachable through the ALB (docs/security.md).
const KEY_FETCHES_PER_INTERVAL: usize = 4;
/// Bounds of the per-provider caches; beyond them the cache starts over (keys are refetched).
const MAX_CACHED_KEYS: usize = 64;
const MAX_REMEMBERED_MISSING_KEYS: usize = 1024;
/// A PEM public key is a few hundred bytes; anything much larger is not one.
const MAX_KEY_BYTES: usize = 16 * 1024;
/// Clock skew tolerated on `exp` and `nbf`, in seconds (as for the JWKS providers).
const LEEWAY_SECONDS: i64 = 30;

/// ALB segments: base64url, with or without `=` padding.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a verified assertion says.
#[derive(Debug, Clone)]
pub struct Claims {
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    /// ALB: when each cached key was fetched.
    key_fetched_at: HashMap<String, Instant>,
    /// JWKS: when the key set was last fetched.
    fetched_at: Option<Instant>,
    /// ALB: key ids that could not be fetched, not asked for again within the refetch interval.
    missing: HashMap<String, Instant>,
    /// ALB: when the fetches of the current window started.
    recent_fetches: VecDeque<Instant>,
}

/// One key cache per configured provider.
pub struct JwtVerifier {
    providers: Vec<(JwtProvider, Mutex<KeyCache>)>,
    http: reqwest::Client,
}

impl JwtVerifier {
    pub fn new(providers: &[JwtProvider]) -> JwtVerifier {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        JwtVerifier { providers: providers.iter().map(|provider| (provider.clone(), Mutex::default())).collect(), http }
    }

    pub fn providers(&self) -> impl Iterator<Item = (usize, &JwtProvider)> {
        self.providers.iter().enumerate().map(|(index, (provider, _))| (index, provider))
    }

    /// Verifies `token` for provider `index`; the error says why it was refused.
    pub async fn verify(&self, index: usize, token: &str) -> Result<Claims, String> {
        let Some((provider, cache)) = self.providers.get(index) else {
            return Err("no such identity provider".into());
        };
        match &provider.keys {
            // One PEM per key id is how AWS ALB publishes its keys, and only ALB tokens use it.
            KeySource::PemPerKeyId { base_url } => self.verify_alb(provider, cache, base_url, token).await,
            KeySource::Jwks { .. } => self.verify_jwks(provider, cache, token).await,
        }
    }

    async fn verify_jwks(
        &self,
        provider: &JwtProvider,
        cache: &Mutex<KeyCache>,
        token: &str,
    ) -> Result<Claims, String> {
        let header_text = token.split('.').next().unwrap_or_default();
        let header_json = decode_segment(header_text).map_err(|error| format!("not a JWT: the header {error}"))?;
        check_critical(&header_json)?;
        let algorithm = header_json["alg"].as_str().unwrap_or("none");
        if !provider.algorithms.iter().any(|accepted| accepted == algorithm) {
            return Err(format!(
                "algorithm {} is not accepted (expected {})",
                shown(algorithm),
                provider.algorithms.join(" or ")
            ));
        }
        let alg = Algorithm::from_str(algorithm).map_err(|_| format!("algorithm {} is unknown", shown(algorithm)))?;
        let kid = header_json["kid"].as_str().unwrap_or_default().to_string();
        if self.key_set_is_old(cache) {
            // Best effort: the keys as cached still serve when the issuer cannot be reached.
            let _ = self.refetch(provider, cache).await;
        }
        let key = match self.cached_key(cache, &kid) {
            Some(key) => key,
            None => {
                self.refetch(provider, cache).await?;
                self.cached_key(cache, &kid)
                    .ok_or_else(|| format!("unknown key id `{}` (not in {})", shown(&kid), provider.keys.url()))?
            }
        };
        if key.0 != alg
            && !matches!(
                (key.0, alg),
                (
                    Algorithm::RS256,
                    Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512
                )
            )
        {
            return Err(format!("algorithm {algorithm} does not match key `{}`", shown(&kid)));
        }
        // jsonwebtoken checks only the signature here: every claim rule is ours (below), the
        // same for every kind, since its `set_audience`/`set_issuer` pass a token that simply
        // leaves the claim out.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(token, &key.1, &validation).map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "the signature does not verify".to_string(),
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                format!("algorithm {algorithm} does not match key `{}`", shown(&kid))
            }
            _ => "not a JWT: the payload is not a base64url JSON object".to_string(),
        })?;
        if !data.claims.is_object() {
            return Err("not a JWT: the payload is not a base64url JSON object".into());
        }
        let now = unix_seconds();
        let expires = numeric_date(&data.claims, "exp")?.ok_or("the assertion has no expiry (`exp`)")?;
        check_lifetime(&[expires], numeric_date(&data.claims, "nbf")?, now)?;
        check_issuer(provider, &[(issuer_claim(&data.claims)?, true)])?;
        check_audience(provider, &data.claims)?;
        claims(provider, &data.claims)
    }

    fn cached_key(&self, cache: &Mutex<KeyCache>, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keys.get(kid).cloned()
    }

    fn key_set_is_old(&self, cache: &Mutex<KeyCache>) -> bool {
        let cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.fetched_at.is_some_and(|at| at.elapsed() >= KEY_SET_MAX_AGE)
    }

    /// Fetches the JWKS again (at most once per `key_refetch_interval`) and makes it the
    /// key set: keys the issuer no longer serves are dropped. On a failed fetch, or an answer
    /// that is not a JWKS, the cached keys stay.
    async fn refetch(&self, provider: &JwtProvider, cache: &Mutex<KeyCache>) -> Result<(), String> {
        {
            let cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.fetched_at.is_some_and(|at| at.elapsed() < provider.key_refetch_interval) {
                return Ok(());
            }
        }
        let url = provider.keys.url();
        let fetched = async {
            let response = self.http.get(url).send().await.map_err(|error| error.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status().as_u16()));
            }
            let jwks = response.json::<Value>().await.map_err(|error| error.to_string())?;
            let keys = jwks["keys"].as_array().ok_or("the answer is not a JWKS (no `keys` list)")?;
            Ok(keys.iter().filter_map(parse_jwk).take(MAX_CACHED_KEYS).collect::<HashMap<_, _>>())
        }
        .await;
        let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.fetched_at = Some(Instant::now());
        let keys = fetched.map_err(|error: String| {
            tracing::error!(%url, %error, "cannot fetch the JWKS; the keys fetched before stay in use");
            format!("cannot fetch keys from {url}: {error}")
        })?;
        let withdrawn: Vec<&String> = cache.keys.keys().filter(|kid| !keys.contains_key(*kid)).collect();
        if !withdrawn.is_empty() {
            tracing::info!(%url, ?withdrawn, "signing keys withdrawn from the JWKS are no longer trusted");
        }
        cache.keys = keys;
        Ok(())
    }

    /// An ALB assertion: see the module documentation for why it is checked by hand.
    async fn verify_alb(
        &self,
        provider: &JwtProvider,
        cache: &Mutex<KeyCache>,
        base_url: &str,
        token: &str,
    ) -> Result<Claims, String> {
        let mut segments = token.split('.');
        let (Some(header_text), Some(payload_text), Some(signature_text), None) =
            (segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err("not a JWT: expected three dot-separated parts".into());
        };
        let header = decode_segment(header_text).map_err(|error| format!("not a JWT: the header {error}"))?;
        check_critical(&header)?;
        let algorithm = header["alg"].as_str().unwrap_or("none");
        if algorithm != "ES256" {
            return Err(format!("algorithm {} is not accepted (expected ES256)", shown(algorithm)));
        }
        // Every ALB of the region signs with the same keys: only the signer names ours.
        let signer = header["signer"].as_str().unwrap_or_default();
        if Some(signer) != provider.signer_arn.as_deref() {
            return Err(format!("the assertion was signed by another load balancer (signer `{}`)", shown(signer)));
        }
        // The key id becomes part of a URL: only the characters AWS uses (a UUID).
        let kid = header["kid"]
            .as_str()
            .filter(|kid| {
                !kid.is_empty()
                    && kid.len() <= 128
                    && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .ok_or("the assertion has no usable key id (`kid`)")?;
        let key = self.alb_key(cache, base_url, kid, provider.key_refetch_interval).await?;
        // The ALB signed the segments exactly as sent, padding included.
        let signed_text = &token[..header_text.len() + 1 + payload_text.len()];
        let signature = signature_text.trim_end_matches('=');
        if !jsonwebtoken::crypto::verify(signature, signed_text.as_bytes(), &key, Algorithm::ES256).unwrap_or(false) {
            return Err("the signature does not verify".into());
        }
        let payload =
            decode_segment(payload_text).map_err(|error| format!("invalid assertion: the payload {error}"))?;
        let now = unix_seconds();
        // The ALB puts `exp` and `iss` in the header; the payload may repeat them.
        let expires = numeric_date(&header, "exp")?.ok_or("the assertion has no expiry (`exp`)")?;
        let expiries: Vec<i64> = std::iter::once(expires).chain(numeric_date(&payload, "exp")?).collect();
        check_lifetime(&expiries, numeric_date(&payload, "nbf")?, now)?;
        check_issuer(provider, &[(issuer_claim(&header)?, true), (issuer_claim(&payload)?, false)])?;
        claims(provider, &payload)
    }

    /// The PEM key of `kid`, from the cache or fetched from `{base_url}/{kid}`.
    /// A cached key older than [`KEY_SET_MAX_AGE`] is fetched again: a 404 evicts it (AWS
    /// withdrew it), any other failure keeps it.
    async fn alb_key(
        &self,
        cache: &Mutex<KeyCache>,
        base_url: &str,
        kid: &str,
        refetch_interval: Duration,
    ) -> Result<DecodingKey, String> {
        let unknown = |why: &str| format!("unknown key id `{kid}` ({why})");
        let cached = {
            let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let cached = cache.keys.get(kid).map(|(_, key)| key.clone());
            let fresh = cache.key_fetched_at.get(kid).is_some_and(|at| now.duration_since(*at) < KEY_SET_MAX_AGE);
            if let (Some(key), true) = (&cached, fresh) {
                return Ok(key.clone());
            }
            if cached.is_none() && cache.missing.get(kid).is_some_and(|at| now.duration_since(*at) < refetch_interval) {
                return Err(unknown("not found at the key server moments ago"));
            }
            while cache.recent_fetches.front().is_some_and(|at| now.duration_since(*at) >= refetch_interval) {
                cache.recent_fetches.pop_front();
            }
            if cache.recent_fetches.len() >= KEY_FETCHES_PER_INTERVAL {
                // An old key stays in use until the budget allows checking it again.
                return cached
                    .ok_or_else(|| unknown("too many new key ids at once; not fetched, try again in a few seconds"));
            }
            cache.recent_fetches.push_back(now);
            cached
        };
        let url = format!("{base_url}/{kid}");
        let fetched = self.fetch_pem(&url).await.and_then(|pem| {
            DecodingKey::from_ec_pem(&pem).map_err(|error| format!("not an EC public key in PEM form: {error}"))
        });
        let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match fetched {
            Ok(key) => {
                if cache.keys.len() >= MAX_CACHED_KEYS {
                    cache.keys.clear();
                    cache.key_fetched_at.clear();
                }
                cache.keys.insert(kid.to_string(), (Algorithm::ES256, key.clone()));
                cache.key_fetched_at.insert(kid.to_string(), Instant::now());
                cache.missing.remove(kid);
                Ok(key)
            }
            Err(error) => {
                let withdrawn = error == "HTTP 404" || error == "HTTP 410";
                if let (Some(key), false) = (cached, withdrawn) {
                    // The key server is unreachable or confused: keep trusting the key we
                    // had rather than log everyone out; check again after another max age.
                    tracing::warn!(%url, %error, "cannot check the ALB signing key again; the cached key stays in use");
                    cache.key_fetched_at.insert(kid.to_string(), Instant::now());
                    return Ok(key);
                }
                if cache.keys.remove(kid).is_some() {
                    tracing::info!(%url, "the ALB signing key was withdrawn (HTTP 404): it is no longer trusted");
                }
                cache.key_fetched_at.remove(kid);
                tracing::warn!(%url, %error, "cannot fetch the ALB signing key");
                if cache.missing.len() >= MAX_REMEMBERED_MISSING_KEYS {
                    cache.missing.clear();
                }
                cache.missing.insert(kid.to_string(), Instant::now());
                Err(unknown(&format!("cannot fetch {url}: {error}")))
            }
        }
    }

    async fn fetch_pem(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self.http.get(url).send().await.map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
            if body.len() + chunk.len() > MAX_KEY_BYTES {
                return Err(format!("the answer is larger than {MAX_KEY_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn parse_jwk(key: &Value) -> Option<(String, (Algorithm, DecodingKey))> {
    let kid = key["kid"].as_str().unwrap_or_default().to_string();
    let text = |name: &str| key[name].as_str();
    let parsed = match text("kty")? {
        "RSA" => (Algorithm::RS256, DecodingKey::from_rsa_components(text("n")?, text("e")?).ok()?),
        "EC" => {
            let algorithm = match text("crv")? {
                "P-256" => Algorithm::ES256,
                "P-384" => Algorithm::ES384,
                _ => return None,
            };
            (algorithm, DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?)
        }
        "OKP" => (Algorithm::EdDSA, DecodingKey::from_ed_components(text("x")?).ok()?),
        _ => return None,
    };
    Some((kid, parsed))
}

fn claims(provider: &JwtProvider, claims: &Value) -> Result<Claims, String> {
    let user = claims[&provider.user_claim]
        .as_str()
        .filter(|user| !user.is_empty())
        .ok_or_else(|| format!("the assertion has no `{}` claim", provider.user_claim))?
        .to_string();
    let groups = match &claims[&provider.groups_claim] {
        Value::Array(items) => items.iter().filter_map(|item| item.as_str().map(str::to_string)).collect(),
        Value::String(text) => oneoff_core::auth::split_groups(text),
        _ => Vec::new(),
    };
    Ok(Claims { user, email: claims["email"].as_str().map(str::to_string), groups })
}

// The claim rules, the same for every kind of provider. When `issuer` or `audience` is
// configured the claim must be present: a token that leaves it out proves nothing about
// who it was issued by or for.

/// A NumericDate claim (`exp`, `nbf`): absent, or a number of seconds since 1970.
fn numeric_date(object: &Value, name: &str) -> Result<Option<i64>, String> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => match (number.as_i64(), number.as_f64()) {
            (Some(seconds), _) => Ok(Some(seconds)),
            // Fractions of a second are allowed; saturating float-to-int keeps huge values huge.
            #[allow(clippy::cast_possible_truncation)]
            (None, Some(seconds)) if seconds.is_finite() => Ok(Some(seconds.floor() as i64)),
            _ => Err(format!("the assertion's `{name}` is not a number of seconds since 1970")),
        },
        Some(other) => Err(format!(
            "the assertion's `{name}` must be a number of seconds since 1970, not {}",
            shown(&other.to_string())
        )),
    }
}

/// Refuses an expired or not-yet-valid assertion, with [`LEEWAY_SECONDS`] of clock skew.
fn check_lifetime(expiries: &[i64], not_before: Option<i64>, now: i64) -> Result<(), String> {
    if expiries.iter().any(|expiry| expiry.saturating_add(LEEWAY_SECONDS) <= now) {
        return Err("the assertion has expired".into());
    }
    if not_before.is_some_and(|not_before| not_before.saturating_sub(LEEWAY_SECONDS) > now) {
        return Err("the assertion is not valid yet".into());
    }
    Ok(())
}

/// The `iss` of a header or payload: absent, or one string (an array is refused: an issuer
/// is one URL, and a list would let a token claim several).
fn issuer_claim(object: &Value) -> Result<Option<&str>, String> {
    match object.get("iss") {
        None => Ok(None),
        Some(Value::String(issuer)) => Ok(Some(issuer)),
        Some(Value::Array(_)) => Err("the assertion's `iss` is a list; an issuer must be one string".into()),
        Some(other) => Err(format!("the assertion's `iss` must be a string, not {}", shown(&other.to_string()))),
    }
}

/// With an `issuer` configured, each copy of `iss` that is required must be present, and
/// every copy present must name that issuer.
fn check_issuer(provider: &JwtProvider, copies: &[(Option<&str>, bool)]) -> Result<(), String> {
    let Some(expected) = &provider.issuer else { return Ok(()) };
    for (found, required) in copies {
        match found {
            Some(found) if found == expected => {}
            Some(found) => {
                return Err(format!("the assertion is from another issuer (`{}`, expected `{expected}`)", shown(found)))
            }
            None if *required => {
                return Err(format!("the assertion names no issuer (`iss`); this server requires `{expected}`"))
            }
            None => {}
        }
    }
    Ok(())
}

/// With an `audience` configured, `aud` must be present and name it: one string, or an
/// array of strings holding it.
fn check_audience(provider: &JwtProvider, claims: &Value) -> Result<(), String> {
    let Some(expected) = &provider.audience else { return Ok(()) };
    let audiences: Vec<&str> = match claims.get("aud") {
        None => return Err(format!("the assertion names no audience (`aud`); this server requires `{expected}`")),
        Some(Value::String(audience)) => vec![audience.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<&str>>>()
            .ok_or("the assertion's `aud` must be a string or a list of strings")?,
        Some(_) => return Err("the assertion's `aud` must be a string or a list of strings".into()),
    };
    if audiences.contains(&expected.as_str()) {
        return Ok(());
    }
    let found: Vec<String> = audiences.iter().map(|audience| shown(audience)).collect();
    Err(format!("the assertion is for another audience (`{}`, expected `{expected}`)", found.join("`, `")))
}

/// oneoff understands no JWS extension, so any critical one (RFC 7515 §4.1.11) is refused:
/// the issuer said the token must not be accepted by a verifier that ignores it.
fn check_critical(header: &Value) -> Result<(), String> {
    match header.get("crit") {
        None => Ok(()),
        Some(Value::Array(names)) => {
            let names: Vec<String> = names.iter().map(|name| shown(name.as_str().unwrap_or("?"))).collect();
            Err(format!(
                "the assertion requires header extensions oneoff does not understand (`crit`: {})",
                names.join(", ")
            ))
        }
        Some(_) => Err("the assertion's `crit` header is not a list of extension names".into()),
    }
}

/// A JSON object from one base64url segment, padded or not.
fn decode_segment(segment: &str) -> Result<Value, String> {
    let bytes = BASE64URL_ANY_PADDING.decode(segment).map_err(|_| "is not base64url".to_string())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err("is not a JSON object".into()),
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

/// Text from a request, made safe to put in a message and a log line: short, escaped.
fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut shown: String = text.chars().take(MAX_CHARS).flat_map(char::escape_debug).collect();
    if text.chars().count() > MAX_CHARS {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode_with_or_without_padding() {
        // {"a":1} is 7 bytes: base64url "eyJhIjoxfQ" needs "==" padding.
        assert_eq!(decode_segment("eyJhIjoxfQ").unwrap()["a"], 1);
        assert_eq!(decode_segment("eyJhIjoxfQ==").unwrap()["a"], 1);
        assert!(decode_segment("not base64!").is_err());
        assert!(decode_segment("WzFd").is_err(), "[1] is JSON but not an object");
        assert!(decode_segment("").is_err());
    }

    fn provider(issuer: Option<&str>, audience: Option<&str>) -> JwtProvider {
        JwtProvider {
            kind: oneoff_core::auth::JwtKind::Generic,
            header: "Authorization".into(),
            keys: KeySource::Jwks { url: "http://127.0.0.1/certs".into() },
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
            algorithms: vec!["ES256".into()],
            user_claim: "sub".into(),
            groups_claim: "groups".into(),
            signer_arn: None,
            key_refetch_interval: oneoff_core::config::DEFAULT_KEY_REFETCH_INTERVAL,
        }
    }

    #[test]
    fn configured_issuer_and_audience_must_be_present_and_match() {
        let strict = provider(Some("https://idp"), Some("oneoff"));
        let audience = |claims: Value| check_audience(&strict, &claims);
        assert!(audience(serde_json::json!({ "aud": "oneoff" })).is_ok());
        assert!(audience(serde_json::json!({ "aud": ["other", "oneoff"] })).is_ok());
        assert!(audience(serde_json::json!({})).unwrap_err().contains("names no audience"));
        assert!(audience(serde_json::json!({ "aud": "other" })).unwrap_err().contains("another audience"));
        assert!(audience(serde_json::json!({ "aud": ["oneoff", 1] })).is_err());
        assert!(audience(serde_json::json!({ "aud": 7 })).is_err());
        let issuer = |claims: Value| issuer_claim(&claims).and_then(|iss| check_issuer(&strict, &[(iss, true)]));
        assert!(issuer(serde_json::json!({ "iss": "https://idp" })).is_ok());
        assert!(issuer(serde_json::json!({})).unwrap_err().contains("names no issuer"));
        assert!(issuer(serde_json::json!({ "iss": ["https://idp"] })).unwrap_err().contains("is a list"));
        assert!(issuer(serde_json::json!({ "iss": "https://evil" })).unwrap_err().contains("another issuer"));
        let lax = provider(None, None);
        assert!(check_audience(&lax, &serde_json::json!({})).is_ok());
        assert!(check_issuer(&lax, &[(None, true)]).is_ok());
    }

    #[test]
    fn dates_are_numbers_and_critical_extensions_are_refused() {
        let claims = serde_json::json!({ "exp": 100, "nbf": 1.5, "bad": "100", "worse": null });
        assert_eq!(numeric_date(&claims, "exp"), Ok(Some(100)));
        assert_eq!(numeric_date(&claims, "nbf"), Ok(Some(1)));
        assert_eq!(numeric_date(&claims, "absent"), Ok(None));
        assert!(numeric_date(&claims, "bad").unwrap_err().contains("number of seconds"));
        assert!(numeric_date(&claims, "worse").is_err());
        assert!(check_lifetime(&[100], None, 100 + LEEWAY_SECONDS).is_err());
        assert!(check_lifetime(&[100], Some(50), 60).is_ok());
        assert!(check_lifetime(&[i64::MAX], Some(i64::MIN), 0).is_ok(), "no overflow");
        assert!(check_critical(&serde_json::json!({ "alg": "ES256" })).is_ok());
        assert!(check_critical(&serde_json::json!({ "crit": ["b64"] })).unwrap_err().contains("b64"));
        assert!(check_critical(&serde_json::json!({ "crit": "b64" })).is_err());
    }

    #[test]
    fn request_text_in_messages_is_short_and_escaped() {
        assert_eq!(shown("ES256"), "ES256");
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"x".repeat(200)).chars().count(), 81);
    }
}
