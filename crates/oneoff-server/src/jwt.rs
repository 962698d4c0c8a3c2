//! Verifying signed identity assertions (Cloudflare Access, Pomerium, AWS ALB, any JWKS issuer).
//!
//! Keys come from each provider's JWKS URL (or, for an AWS ALB, one PEM file per key id) and
//! are cached by key id; an unknown key id triggers a refetch (key rotation), rate-limited
//! per provider (see [`REFETCH_INTERVAL`]) so a flood of forged key ids cannot hammer the
//! issuer. Only the provider's asymmetric algorithms are accepted: `none` and HS256 (a
//! public key misused as an HMAC secret) never verify.
//!
//! ALB tokens are not quite JWTs: their segments are base64url *with* `=` padding, which
//! JWT libraries reject, and the ALB signs the segments as sent, padding included. So they
//! are checked here by hand: header fields first (`alg`, `signer`, `kid`), then the ES256
//! signature over the exact `header.payload` text received, then expiry and issuer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oneoff_core::auth::{JwtProvider, KeySource};
use serde_json::Value;

/// How often a JWKS is fetched again at most, and the window of the ALB per-key fetch budget.
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// ALB keys are fetched one key id at a time: at most this many fetches per
/// [`REFETCH_INTERVAL`] and provider, so forged key ids cannot make the server hammer AWS.
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
    /// JWKS: when the key set was last fetched.
    fetched_at: Option<Instant>,
    /// ALB: key ids that could not be fetched, not asked for again within [`REFETCH_INTERVAL`].
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
        let header = jsonwebtoken::decode_header(token).map_err(|error| format!("not a JWT: {error}"))?;
        let algorithm = format!("{:?}", header.alg);
        if !provider.algorithms.contains(&algorithm) {
            return Err(format!(
                "algorithm {algorithm} is not accepted (expected {})",
                provider.algorithms.join(" or ")
            ));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let key = match self.cached_key(cache, &kid) {
            Some(key) => key,
            None => {
                self.refetch(provider, cache).await?;
                self.cached_key(cache, &kid)
                    .ok_or_else(|| format!("unknown key id `{}` (not in {})", shown(&kid), provider.keys.url()))?
            }
        };
        if key.0 != header.alg
            && !matches!(
                (key.0, header.alg),
                (
                    Algorithm::RS256,
                    Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512
                )
            )
        {
            return Err(format!("algorithm {algorithm} does not match key `{kid}`"));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = 30;
        validation.validate_nbf = true;
        match &provider.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &provider.issuer {
            validation.set_issuer(&[issuer]);
        }
        let data = jsonwebtoken::decode::<Value>(token, &key.1, &validation).map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the assertion has expired".to_string(),
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => "the assertion is not valid yet".to_string(),
            jsonwebtoken::errors::ErrorKind::InvalidAudience => "the assertion is for another audience".to_string(),
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => "the assertion is from another issuer".to_string(),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "the signature does not verify".to_string(),
            other => format!("invalid assertion: {other:?}"),
        })?;
        claims(provider, &data.claims)
    }

    fn cached_key(&self, cache: &Mutex<KeyCache>, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keys.get(kid).cloned()
    }

    async fn refetch(&self, provider: &JwtProvider, cache: &Mutex<KeyCache>) -> Result<(), String> {
        {
            let cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.fetched_at.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
                return Ok(());
            }
        }
        let url = provider.keys.url();
        let fetched = async {
            let response = self.http.get(url).send().await.map_err(|error| error.to_string())?;
            response.json::<Value>().await.map_err(|error| error.to_string())
        }
        .await;
        let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.fetched_at = Some(Instant::now());
        let jwks = fetched.map_err(|error| {
            tracing::error!(%url, %error, "cannot fetch the JWKS");
            format!("cannot fetch keys from {url}: {error}")
        })?;
        for key in jwks["keys"].as_array().into_iter().flatten() {
            if let Some((kid, parsed)) = parse_jwk(key) {
                cache.keys.insert(kid, parsed);
            }
        }
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
        let key = self.alb_key(cache, base_url, kid).await?;
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
        let Some(expires) = header["exp"].as_i64() else { return Err("the assertion has no expiry (`exp`)".into()) };
        for expiry in std::iter::once(expires).chain(payload["exp"].as_i64()) {
            if expiry + LEEWAY_SECONDS <= now {
                return Err("the assertion has expired".into());
            }
        }
        if payload["nbf"].as_i64().is_some_and(|not_before| not_before - LEEWAY_SECONDS > now) {
            return Err("the assertion is not valid yet".into());
        }
        if let Some(issuer) = &provider.issuer {
            let header_issuer = header["iss"].as_str();
            if header_issuer != Some(issuer.as_str()) || payload["iss"].as_str().is_some_and(|iss| iss != issuer) {
                return Err(format!(
                    "the assertion is from another issuer (`{}`)",
                    shown(header_issuer.unwrap_or_default())
                ));
            }
        }
        claims(provider, &payload)
    }

    /// The PEM key of `kid`, from the cache or fetched from `{base_url}/{kid}`.
    async fn alb_key(&self, cache: &Mutex<KeyCache>, base_url: &str, kid: &str) -> Result<DecodingKey, String> {
        let unknown = |why: &str| format!("unknown key id `{kid}` ({why})");
        {
            let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, key)) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
            let now = Instant::now();
            if cache.missing.get(kid).is_some_and(|at| now.duration_since(*at) < REFETCH_INTERVAL) {
                return Err(unknown("not found at the key server moments ago"));
            }
            while cache.recent_fetches.front().is_some_and(|at| now.duration_since(*at) >= REFETCH_INTERVAL) {
                cache.recent_fetches.pop_front();
            }
            if cache.recent_fetches.len() >= KEY_FETCHES_PER_INTERVAL {
                return Err(unknown("too many new key ids at once; not fetched, try again in a few seconds"));
            }
            cache.recent_fetches.push_back(now);
        }
        let url = format!("{base_url}/{kid}");
        let fetched = self.fetch_pem(&url).await.and_then(|pem| {
            DecodingKey::from_ec_pem(&pem).map_err(|error| format!("not an EC public key in PEM form: {error}"))
        });
        let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match fetched {
            Ok(key) => {
                if cache.keys.len() >= MAX_CACHED_KEYS {
                    cache.keys.clear();
                }
                cache.keys.insert(kid.to_string(), (Algorithm::ES256, key.clone()));
                cache.missing.remove(kid);
                Ok(key)
            }
            Err(error) => {
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

    #[test]
    fn request_text_in_messages_is_short_and_escaped() {
        assert_eq!(shown("ES256"), "ES256");
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"x".repeat(200)).chars().count(), 81);
    }
}
