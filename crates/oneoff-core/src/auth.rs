//! Who is asking, and what they may do: principals, access lists, trusted-proxy rules.
//!
//! Pure rules only. The HTTP layer finds the principal (a token, trusted proxy headers, or
//! anonymous) and asks [`Access`] whether it may see or run a job; the same answers decide
//! what the catalog lists, which runs are shown, and every log transport.

use std::net::IpAddr;

/// How a principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// An API token: its id (tokens made with it record it as their parent) and its name.
    Token { id: i64, name: String },
    /// Headers set by an SSO proxy whose address is trusted.
    TrustedHeaders,
    /// A signed assertion verified with the provider's keys, by its header name.
    Jwt(String),
    /// Nobody: anonymous access is on.
    Anonymous,
}

impl IdentitySource {
    pub fn describe(&self) -> String {
        match self {
            IdentitySource::Token { name, .. } => format!("token:{name}"),
            IdentitySource::TrustedHeaders => "trusted_headers".into(),
            IdentitySource::Jwt(header) => format!("jwt:{}", header.to_ascii_lowercase()),
            IdentitySource::Anonymous => "anonymous".into(),
        }
    }
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub source: IdentitySource,
    pub admin: bool,
}

/// Users and groups; empty lists match nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl AccessList {
    pub fn admits(&self, principal: &Principal) -> bool {
        self.users.contains(&principal.user) || self.groups.iter().any(|group| principal.groups.contains(group))
    }
}

/// Who may run and who may view one job. `None` means everyone who may use oneoff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub run: Option<AccessList>,
    pub view: Option<AccessList>,
}

impl Access {
    pub fn may_run(&self, principal: &Principal) -> bool {
        principal.admin || self.run.as_ref().is_none_or(|list| list.admits(principal))
    }

    /// Those who may run a job may also see its runs.
    pub fn may_view(&self, principal: &Principal) -> bool {
        self.may_run(principal) || self.view.as_ref().is_none_or(|list| list.admits(principal))
    }
}

/// An IPv4 or IPv6 network such as `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr =
            address.trim().parse().map_err(|_| format!("`{text}` is not an IP network like 10.0.0.0/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse::<u8>().ok().filter(|prefix| *prefix <= max),
            None => Some(max),
        }
        .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?;
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// Identity from an SSO proxy's headers, accepted only from trusted peers.
#[derive(Debug, Clone)]
pub struct TrustedHeaders {
    pub trusted_cidrs: Vec<Cidr>,
    pub user_header: String,
    pub email_header: String,
    pub groups_header: String,
}

impl TrustedHeaders {
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_cidrs.iter().any(|cidr| cidr.contains(peer))
    }
}

/// Which SSO product signs the assertions; decides the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtKind {
    /// Cloudflare Access: `Cf-Access-Jwt-Assertion`, RS256, audience = the application's AUD tag.
    Cloudflare,
    /// Pomerium: `X-Pomerium-Jwt-Assertion`, ES256.
    Pomerium,
    /// Any issuer with a JWKS URL.
    Generic,
    /// AWS Application Load Balancer OIDC: `x-amzn-oidc-data`, ES256, one PEM key per key id,
    /// and the load balancer's ARN in the token header's `signer`.
    Alb,
}

/// Where a provider's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS document holding every current key.
    Jwks { url: String },
    /// One PEM public key per key id at `{base_url}/{kid}` (how AWS ALB publishes its keys).
    PemPerKeyId { base_url: String },
}

impl KeySource {
    /// The URL to name in messages: the JWKS URL or the key base URL.
    pub fn url(&self) -> &str {
        match self {
            KeySource::Jwks { url } => url,
            KeySource::PemPerKeyId { base_url } => base_url,
        }
    }
}

/// A verified identity assertion: a JWT in a request header, checked against the provider's
/// public keys, with the issuer and audience (or, for ALB, the signer) it must carry.
#[derive(Debug, Clone)]
pub struct JwtProvider {
    pub kind: JwtKind,
    pub header: String,
    pub keys: KeySource,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Accepted signature algorithms; only asymmetric ones (RS*, PS*, ES*, EdDSA) are allowed.
    pub algorithms: Vec<String>,
    pub user_claim: String,
    pub groups_claim: String,
    /// ALB only: the load balancer's ARN; a token whose header `signer` differs is refused,
    /// since every ALB in every AWS account signs with the same regional keys.
    pub signer_arn: Option<String>,
    /// How often the keys are fetched again at most: a JWKS as a whole, and for an ALB the
    /// window of its per-key-id fetch budget. Bounds what forged key ids can make us fetch,
    /// and how long a key the provider withdrew is still trusted after a newer one is seen.
    pub key_refetch_interval: std::time::Duration,
}

/// The region of an Elastic Load Balancing ARN
/// (`arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/app/NAME/ID`), and whether it
/// is in the standard `aws` partition, whose key servers follow the documented URL pattern.
pub fn alb_arn_region(arn: &str) -> Option<(&str, bool)> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, partition, service, region) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let (_account, resource) = (parts.next()?, parts.next()?);
    let region_ok =
        !region.is_empty() && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (prefix == "arn" && service == "elasticloadbalancing" && region_ok && resource.starts_with("loadbalancer/app/"))
        .then_some((region, partition == "aws"))
}

/// Where AWS publishes the ALB signing keys of a region.
pub fn alb_key_url(region: &str) -> String {
    format!("https://public-keys.auth.elb.{region}.amazonaws.com")
}

/// Stream tickets: how a browser whose identity is an API token opens a WebSocket or
/// EventSource, which cannot carry an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTicketLimits {
    /// How long a ticket may wait before it is used.
    pub ttl: std::time::Duration,
    /// Unused tickets held at once across the server; beyond it new ones get 503.
    pub max_outstanding: usize,
    /// Unused tickets one principal may hold; beyond it new ones get 429.
    pub max_per_principal: usize,
}

impl Default for StreamTicketLimits {
    fn default() -> StreamTicketLimits {
        StreamTicketLimits { ttl: std::time::Duration::from_secs(30), max_outstanding: 10_000, max_per_principal: 100 }
    }
}

/// The `[auth]` settings.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Requests without an identity are served as user `anonymous`.
    pub anonymous: bool,
    pub trusted_headers: Option<TrustedHeaders>,
    pub jwt: Vec<JwtProvider>,
    pub admins: AccessList,
    pub stream_tickets: StreamTicketLimits,
}

impl AuthConfig {
    /// Anonymous callers are administrators only when nothing else can identify anyone:
    /// a single-user local setup.
    pub fn anonymous_principal(&self) -> Principal {
        Principal {
            user: "anonymous".into(),
            email: None,
            groups: Vec::new(),
            source: IdentitySource::Anonymous,
            admin: self.trusted_headers.is_none() && self.jwt.is_empty(),
        }
    }

    /// A principal with its admin flag set from the configured admins.
    pub fn principal(
        &self,
        user: String,
        email: Option<String>,
        groups: Vec<String>,
        source: IdentitySource,
    ) -> Principal {
        let mut principal = Principal { user, email, groups, source, admin: false };
        principal.admin = self.admins.admits(&principal);
        principal
    }
}

/// Splits a groups header value (`a, b,c`) into names.
pub fn split_groups(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|group| !group.is_empty()).map(str::to_string).collect()
}

/// The stored form of an API token: its SHA-256, in hex. The token itself is never kept.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::hex::encode(&Sha256::digest(token.as_bytes()))
}

/// The prefix of every API token, so leaked tokens are easy to spot and scan for.
pub const TOKEN_PREFIX: &str = "oneoff_";

#[cfg(test)]
mod tests {
    use super::*;

    fn person(user: &str, groups: &[&str]) -> Principal {
        Principal {
            user: user.into(),
            email: None,
            groups: groups.iter().map(|group| group.to_string()).collect(),
            source: IdentitySource::TrustedHeaders,
            admin: false,
        }
    }

    #[test]
    fn access_lists_decide_run_and_view() {
        let access = Access {
            run: Some(AccessList { users: vec!["alice".into()], groups: vec!["eng".into()] }),
            view: Some(AccessList { users: vec![], groups: vec!["support".into()] }),
        };
        assert!(access.may_run(&person("alice", &[])));
        assert!(access.may_run(&person("bob", &["eng"])));
        assert!(!access.may_run(&person("carol", &["support"])));
        assert!(access.may_view(&person("carol", &["support"])));
        assert!(access.may_view(&person("bob", &["eng"])), "runners may view");
        assert!(!access.may_view(&person("mallory", &["sales"])));
        let mut admin = person("root", &[]);
        admin.admin = true;
        assert!(access.may_run(&admin));
        assert!(Access::default().may_run(&person("anyone", &[])), "no list: everyone");
    }

    #[test]
    fn cidrs_match_v4_v6_and_mapped_addresses() {
        let private = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(private.contains("10.1.2.3".parse().unwrap()));
        assert!(!private.contains("11.0.0.1".parse().unwrap()));
        assert!(private.contains("::ffff:10.9.9.9".parse().unwrap()));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten").is_err());
    }

    #[test]
    fn alb_arns_name_their_region() {
        let arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/my-lb/50dc6c495c0c9188";
        assert_eq!(alb_arn_region(arn), Some(("eu-west-1", true)));
        let gov = "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:123456789012:loadbalancer/app/lb/1";
        assert_eq!(alb_arn_region(gov), Some(("us-gov-west-1", false)));
        assert_eq!(alb_arn_region("arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/x/1"), None);
        assert_eq!(alb_arn_region("arn:aws:s3:::bucket"), None);
        assert_eq!(alb_arn_region("arn:aws:elasticloadbalancing:eu/../x:1:loadbalancer/app/a/b"), None);
        assert_eq!(alb_arn_region(""), None);
        assert_eq!(alb_key_url("eu-west-1"), "https://public-keys.auth.elb.eu-west-1.amazonaws.com");
    }

    #[test]
    fn groups_header_values_are_split() {
        assert_eq!(split_groups(" eng, ops ,,support"), vec!["eng", "ops", "support"]);
    }
}
