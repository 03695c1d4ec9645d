//! `providers[i]`: a token issuer — its algorithms, issuer and audiences, where its keys
//! or secret come from, the claims it reads and where its tokens are taken from.

use super::account::{self, AccountSource, RawAccount};
use super::introspection::{self, IntrospectionSource, RawIntrospection};
use super::jwks::{self, JwksSource, RawJwks};
use super::reader::{choose, claim_path, Fields};
use super::revocation::{self, RevocationSource};
use super::secret::{self, RawSecret, Secret};
use super::sender::{self, Dpop, MtlsBinding};
use super::token;
use crate::algorithm::{Algorithm, ALGORITHMS};
use crate::authz::ClaimNames;
use crate::error::{err, ConfigError};
use crate::token::claim_path::ClaimPath;
use crate::token::policy::{normal_typ, valid_issuer_value};
use crate::token::{ClaimCondition, IssuerTemplate, TokenSource};
use serde_json::Value;

/// The longest `max_lifetime_s`: ten years.
const MAX_LIFETIME_S: u64 = 10 * 365 * 24 * 3600;

/// `claim_values` of a provider or a rule: claim reference → a scalar or a non-empty
/// array of scalars.
pub(super) fn read_claim_values(f: &Fields) -> Result<Vec<ClaimCondition>, ConfigError> {
    let mut out = Vec::new();
    for (name, at, v) in f.members("claim_values")? {
        let claim = claim_path(&name, &at)?;
        let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
        let values = match v {
            Value::Array(items) if !items.is_empty() => {
                if let Some(j) = items.iter().position(|i| !scalar(i)) {
                    return err(format!("{at}[{j}]"), "a string, number or boolean");
                }
                items.clone()
            }
            Value::Array(_) => return err(at, "must not be empty"),
            v if scalar(v) => vec![v.clone()],
            _ => return err(at, "a string, number or boolean, or an array of them"),
        };
        out.push(ClaimCondition { claim, values });
    }
    Ok(out)
}

/// A provider as written.
pub(super) struct RawProvider {
    pub(super) name: String,
    issuer: Option<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    jwks: Option<RawJwks>,
    secret: Option<RawSecret>,
    introspection: Option<RawIntrospection>,
    required_claims: Vec<ClaimPath>,
    claims: ClaimNames,
    account: Option<RawAccount>,
    token: TokenSource,
    strip_token: bool,
    /// Taken by the configuration's compile, which shares one list between providers.
    pub(super) revocation: Option<RevocationSource>,
    require_jti: bool,
    dpop: Option<Dpop>,
    mtls_binding: Option<MtlsBinding>,
    token_types: Vec<String>,
    max_lifetime_s: Option<u64>,
    claim_values: Vec<ClaimCondition>,
    issuer_values: Option<Vec<String>>,
}

impl RawProvider {
    /// Reads `providers[i]` (`at` is its path).
    pub(super) fn read(value: &Value, at: &str) -> Result<RawProvider, ConfigError> {
        let f = Fields::of(
            value,
            at,
            &[
                "name",
                "issuer",
                "audiences",
                "algorithms",
                "jwks",
                "secret",
                "introspection",
                "identity",
                "claims",
                "account",
                "token",
                "revocation",
                "require_jti",
                "dpop",
                "mtls_binding",
                "token_types",
                "max_lifetime_s",
                "claim_values",
                "issuer_values",
            ],
        )?;
        let name = f.string("name")?;
        let issuer = f.opt_string("issuer")?;
        let audiences = f.strings("audiences")?;
        let introspection = RawIntrospection::read(&f)?;
        // An introspected token is judged by its authorization server: no algorithms.
        let algorithms = match (&introspection, f.get("algorithms")) {
            (Some(_), Some(_)) => {
                return err(
                    f.path("algorithms"),
                    "not used with introspection (the authorization server checks the token)",
                )
            }
            (Some(_), None) => Vec::new(),
            (None, _) => f.required_items("algorithms")?,
        }
        .into_iter()
        .map(|(at, v)| choose(v, &ALGORITHMS, &at))
        .collect::<Result<_, _>>()?;
        let jwks = RawJwks::read(&f)?;
        let secret = RawSecret::read(&f)?;
        let required_claims = match f.object("identity", &["required_claims"])? {
            Some(g) => g
                .strings("required_claims")?
                .iter()
                .enumerate()
                .map(|(j, c)| claim_path(c, &format!("{}[{j}]", g.path("required_claims"))))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let claims = match f.object("claims", &["permissions", "role", "scope"])? {
            Some(g) => {
                let read = |key: &'static str| -> Result<ClaimPath, ConfigError> {
                    claim_path(&g.string_or(key, key)?, &g.path(key))
                };
                ClaimNames {
                    permissions: read("permissions")?,
                    role: read("role")?,
                    scope: read("scope")?,
                }
            }
            None => ClaimNames::default(),
        };
        let account = RawAccount::read(&f)?;
        let (token, strip_token) = token::read(&f)?;
        let revocation = revocation::read(&f, at)?;
        let require_jti = f.bool_or("require_jti", false)?;
        let dpop = sender::read_dpop(&f, &token)?;
        let mtls_binding = sender::read_mtls(&f)?;
        let mut token_types = Vec::new();
        for (j, t) in f.strings("token_types")?.iter().enumerate() {
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return err(
                    format!("{}[{j}]", f.path("token_types")),
                    "not a media type",
                );
            }
            let normal = normal_typ(t);
            if normal.is_empty() {
                return err(
                    format!("{}[{j}]", f.path("token_types")),
                    "not a media type",
                );
            }
            token_types.push(normal);
        }
        if f.get("token_types").is_some() && token_types.is_empty() {
            return err(f.path("token_types"), "must not be empty");
        }
        let max_lifetime_s = match f.get("max_lifetime_s") {
            Some(_) => {
                let s = f.u64_or("max_lifetime_s", 0)?;
                if !(1..=MAX_LIFETIME_S).contains(&s) {
                    return err(f.path("max_lifetime_s"), format!("1 to {MAX_LIFETIME_S}"));
                }
                Some(s)
            }
            None => None,
        };
        let claim_values = read_claim_values(&f)?;
        Ok(RawProvider {
            issuer_values: f.opt_strings("issuer_values")?,
            token_types,
            max_lifetime_s,
            claim_values,
            dpop,
            mtls_binding,
            revocation,
            require_jti,
            token,
            strip_token,
            name,
            issuer,
            audiences,
            algorithms,
            jwks,
            secret,
            introspection,
            required_claims,
            claims,
            account,
        })
    }
}

/// One token provider.
#[derive(Debug)]
pub struct Provider {
    /// Unique name (used in logs, metrics and rule references).
    pub name: String,
    /// Required `iss`, also used to select the provider for a token.
    pub issuer: Option<String>,
    /// Accepted `aud` values; empty (and no `audience_resource`) means `aud` is not
    /// checked.
    pub audiences: Vec<String>,
    /// `audiences` holds `{resource}`: `aud` may also name the request's protected
    /// resource, so the audience is checked per request, after the caches.
    pub audience_resource: bool,
    /// Algorithms this provider accepts.
    pub algorithms: Vec<Algorithm>,
    /// Where public keys come from.
    pub jwks: Option<JwksSource>,
    /// HMAC shared secret (never logged).
    pub secret: Option<Secret>,
    /// The token introspection endpoint (RFC 7662) that judges this provider's tokens:
    /// then it has no algorithms, keys or secret.
    pub introspection: Option<IntrospectionSource>,
    /// Claims a verified token must carry.
    pub required_claims: Vec<ClaimPath>,
    /// Which claims carry permissions, role and scopes.
    pub claims: ClaimNames,
    /// Account resolution, when configured.
    pub account: Option<AccountSource>,
    /// Where its tokens come from.
    pub token: TokenSource,
    /// Remove the credential before the upstream.
    pub strip_token: bool,
    /// The revocation list its tokens are checked against: an index into
    /// [`super::Config::revocations`] (providers naming the same source share one).
    pub revocation: Option<usize>,
    /// Tokens without a string `jti` are refused.
    pub require_jti: bool,
    /// DPoP-bound tokens (RFC 9449), when accepted.
    pub dpop: Option<Dpop>,
    /// Certificate-bound tokens (RFC 8705), when accepted.
    pub mtls_binding: Option<MtlsBinding>,
    /// `token_types`: the JOSE `typ` values accepted (normalized; empty: not checked).
    pub token_types: Vec<String>,
    /// `max_lifetime_s`: the longest `exp − iat` accepted (`None`: not checked).
    pub max_lifetime_s: Option<u64>,
    /// `claim_values`: conditions every token of this provider meets.
    pub claim_values: Vec<ClaimCondition>,
    /// The `issuer` as a template with one `{claim}` placeholder (multi-tenant issuers).
    pub issuer_template: Option<IssuerTemplate>,
    /// `issuer_values`: the values the placeholder may take (empty: any valid one).
    pub issuer_values: Vec<String>,
    /// `jwks.inline`: keys given in the configuration (never fetched).
    pub inline_keys: Option<crate::keys::KeySet>,
    /// Fingerprint of everything that decides whether this provider accepts a token
    /// (algorithms, issuer, audiences, key source or secret, clock skew, size limit): a
    /// verdict shared between VMs counts only for a provider with the same fingerprint.
    pub fingerprint: u64,
}

impl Provider {
    /// Whether a token with this `iss` is this provider's to judge: its `issuer` equal
    /// (or, for a template, of its shape with a valid value), or no `issuer` set.
    pub fn accepts_issuer(&self, iss: Option<&str>) -> bool {
        match (&self.issuer_template, self.issuer.as_deref()) {
            (Some(t), _) => iss.and_then(|i| t.capture(i)).is_some_and(|v| {
                self.issuer_values.is_empty() || self.issuer_values.iter().any(|a| a == v)
            }),
            (None, Some(want)) => iss == Some(want),
            (None, None) => true,
        }
    }
}

/// Compiles one provider (`at` is its path).
pub(super) fn compile(
    p: RawProvider,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ConfigError> {
    let introspection = match p.introspection {
        Some(i) => {
            let checks = [
                ("jwks", p.jwks.is_some()),
                ("secret", p.secret.is_some()),
                ("token_types", !p.token_types.is_empty()),
                ("max_lifetime_s", p.max_lifetime_s.is_some()),
                ("issuer_values", p.issuer_values.is_some()),
            ];
            if let Some((field, _)) = checks.iter().find(|(_, set)| *set) {
                return err(
                    format!("{at}.{field}"),
                    "not used with introspection (the authorization server checks the token)",
                );
            }
            if p.issuer.as_deref().is_some_and(|i| i.contains('{')) {
                return err(
                    format!("{at}.issuer"),
                    "an issuer template is for signed tokens: with introspection give the issuer itself",
                );
            }
            Some(introspection::compile(i, env)?)
        }
        None => None,
    };
    if p.algorithms.is_empty() && introspection.is_none() {
        return err(
            format!("{at}.algorithms"),
            "at least one algorithm is required",
        );
    }
    let wants_rs = p.algorithms.iter().any(|a| !a.is_hmac());
    let wants_hs = p.algorithms.iter().any(|a| a.is_hmac());
    if wants_rs && wants_hs {
        // Mixing key types in one provider is how algorithm-confusion attacks start.
        return err(
            format!("{at}.algorithms"),
            "public-key (RS*, PS*, ES*, EdDSA) and HMAC (HS*) algorithms need separate providers",
        );
    }
    let (mut inline_keys, mut inline_text) = (None, String::new());
    let jwks = match (wants_rs, p.jwks) {
        (true, Some(j)) if j.inline.is_some() => {
            if let Some((set, path)) = &j.inline {
                inline_keys = Some(jwks::compile_inline(set, path, j.max_bytes)?);
                inline_text = set.to_string();
            }
            None
        }
        (true, Some(j)) => Some(jwks::compile(
            j,
            &format!("{at}.jwks"),
            p.issuer.as_deref(),
        )?),
        (true, None) => {
            return err(
                format!("{at}.jwks"),
                "required for public-key algorithms (RS*, PS*, ES*, EdDSA)",
            )
        }
        (false, Some(_)) => {
            return err(
                format!("{at}.jwks"),
                "only valid with public-key algorithms (RS*, PS*, ES*, EdDSA)",
            )
        }
        (false, None) => None,
    };
    let secret = match (wants_hs, p.secret) {
        (true, Some(s)) => Some(secret::load(
            &s,
            &format!("{at}.secret"),
            env,
            &p.algorithms,
        )?),
        (true, None) => return err(format!("{at}.secret"), "required for HMAC algorithms"),
        (false, Some(_)) => return err(format!("{at}.secret"), "only valid with HMAC algorithms"),
        (false, None) => None,
    };
    if let Some(iss) = &p.issuer {
        if iss.is_empty() {
            return err(format!("{at}.issuer"), "must not be empty");
        }
    }
    let issuer_template = match p.issuer.as_deref().map(IssuerTemplate::parse) {
        Some(Err(m)) => return err(format!("{at}.issuer"), m),
        Some(Ok(Some(t))) if t.claim == "iss" => {
            return err(
                format!("{at}.issuer"),
                "the placeholder names the claim holding the value (e.g. {tid}), not iss",
            )
        }
        Some(Ok(t)) => t,
        None => None,
    };
    let issuer_values = match (&issuer_template, p.issuer_values) {
        (_, None) => Vec::new(),
        (None, Some(_)) => {
            return err(
                format!("{at}.issuer_values"),
                "only with an issuer template (an issuer with one {claim} placeholder)",
            )
        }
        (Some(_), Some(values)) => {
            if values.is_empty() {
                return err(format!("{at}.issuer_values"), "must not be empty");
            }
            if let Some(j) = values.iter().position(|v| !valid_issuer_value(v)) {
                return err(
                    format!("{at}.issuer_values[{j}]"),
                    "1-128 of A-Z a-z 0-9 - _",
                );
            }
            values
        }
    };
    let account = match p.account {
        Some(a) => Some(account::compile(a, &format!("{at}.account"))?),
        None => None,
    };
    let algorithms: Vec<&str> = p.algorithms.iter().map(|a| a.name()).collect();
    let conditions: Vec<String> = p
        .claim_values
        .iter()
        .map(|c| format!("{}={}", c.claim.as_str(), Value::from(c.values.clone())))
        .collect();
    let fingerprint = crate::shared::fingerprint(&[
        algorithms.join(",").as_bytes(),
        p.issuer.as_deref().unwrap_or("").as_bytes(),
        p.audiences.join("\n").as_bytes(),
        &jwks.as_ref().map_or(0, |j| j.fingerprint).to_le_bytes(),
        inline_text.as_bytes(),
        secret.as_ref().map_or(&[][..], |s| &s.0[..]),
        p.token_types.join(",").as_bytes(),
        issuer_values.join(",").as_bytes(),
        &p.max_lifetime_s.unwrap_or(0).to_le_bytes(),
        conditions.join("\n").as_bytes(),
        &introspection
            .as_ref()
            .map_or(0, |i| i.fingerprint)
            .to_le_bytes(),
    ]);
    Ok(Provider {
        inline_keys,
        issuer_template,
        issuer_values,
        token_types: p.token_types,
        max_lifetime_s: p.max_lifetime_s,
        claim_values: p.claim_values,
        revocation: None,
        require_jti: p.require_jti,
        dpop: p.dpop,
        mtls_binding: p.mtls_binding,
        token: p.token,
        strip_token: p.strip_token,
        fingerprint,
        account,
        name: p.name,
        issuer: p.issuer,
        audiences: p.audiences,
        audience_resource: false,
        algorithms: p.algorithms,
        jwks,
        secret,
        introspection,
        required_claims: p.required_claims,
        claims: p.claims,
    })
}
