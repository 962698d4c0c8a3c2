//! Verifying signed identity assertions (Cloudflare Access, Pomerium, any JWKS issuer).
//!
//! Keys come from each provider's JWKS URL and are cached by key id; an unknown key id
//! triggers a refetch (key rotation), at most once per [`REFETCH_INTERVAL`] so a flood of
//! forged key ids cannot hammer the issuer. Only the provider's asymmetric algorithms are
//! accepted: `none` and HS256 (a public key misused as an HMAC secret) never verify.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oneoff_core::auth::JwtProvider;
use serde_json::Value;

const REFETCH_INTERVAL: Duration = Duration::from_secs(10);

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
    fetched_at: Option<Instant>,
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
        let (provider, cache) = &self.providers[index];
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
                    .ok_or_else(|| format!("unknown key id `{kid}` (not in {})", provider.jwks_url))?
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
        let fetched = async {
            let response = self.http.get(&provider.jwks_url).send().await.map_err(|error| error.to_string())?;
            response.json::<Value>().await.map_err(|error| error.to_string())
        }
        .await;
        let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.fetched_at = Some(Instant::now());
        let jwks = fetched.map_err(|error| {
            tracing::error!(url = %provider.jwks_url, %error, "cannot fetch the JWKS");
            format!("cannot fetch keys from {}: {error}", provider.jwks_url)
        })?;
        for key in jwks["keys"].as_array().into_iter().flatten() {
            if let Some((kid, parsed)) = parse_jwk(key) {
                cache.keys.insert(kid, parsed);
            }
        }
        Ok(())
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
