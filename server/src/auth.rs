//! Client tokens (HS256 JWTs naming a user id) and the backend's API secret.
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The claims a client token carries: `user_id` (as Stream's client tokens do) and an
/// optional `exp`, checked when present.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub fn new(secret: &str) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.leeway = 5;
        Keys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// The user id a token names, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<String, String> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims.user_id)
            .map_err(|e| format!("invalid token: {e}"))
    }

    /// A token for `user_id` that expires after `ttl_s` seconds.
    pub fn sign(&self, user_id: &str, ttl_s: u64) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = Claims { user_id: user_id.to_owned(), exp: Some(now + ttl_s) };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }
}

/// Compares secrets in time independent of where they first differ.
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}
