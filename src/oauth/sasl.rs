//! The client messages of the two SASL mechanisms that carry an OAuth2 bearer token. Both are sent as
//! one initial response; a server that refuses answers with a challenge holding a JSON error, to which
//! the client replies with an empty response (RFC 7628 §3.2.3) before the final failure.
use zeroize::Zeroizing;

/// How a login presents its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMechanism {
    /// A password: IMAP `LOGIN`, SMTP `AUTH PLAIN`/`LOGIN`.
    #[default]
    Password,
    /// An access token with `XOAUTH2` (Google, Microsoft).
    XOAuth2,
    /// An access token with `OAUTHBEARER` (RFC 7628).
    OAuthBearer,
}

impl AuthMechanism {
    /// The SASL name, for OAuth mechanisms.
    pub fn sasl_name(self) -> Option<&'static str> {
        match self {
            AuthMechanism::Password => None,
            AuthMechanism::XOAuth2 => Some("XOAUTH2"),
            AuthMechanism::OAuthBearer => Some("OAUTHBEARER"),
        }
    }

    /// The initial client response (before base64) for an OAuth mechanism; `None` for passwords.
    pub fn initial_response(
        self,
        user: &str,
        host: &str,
        port: u16,
        token: &str,
    ) -> Option<Zeroizing<Vec<u8>>> {
        match self {
            AuthMechanism::Password => None,
            AuthMechanism::XOAuth2 => Some(xoauth2(user, token)),
            AuthMechanism::OAuthBearer => Some(oauthbearer(user, host, port, token)),
        }
    }
}

impl From<crate::config::SaslMechanism> for AuthMechanism {
    fn from(mechanism: crate::config::SaslMechanism) -> Self {
        match mechanism {
            crate::config::SaslMechanism::XOAuth2 => AuthMechanism::XOAuth2,
            crate::config::SaslMechanism::OAuthBearer => AuthMechanism::OAuthBearer,
        }
    }
}

/// `user=<user>^Aauth=Bearer <token>^A^A` (Google's XOAUTH2 protocol description).
pub fn xoauth2(user: &str, token: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes())
}

/// `n,a=<user>,^Ahost=<host>^Aport=<port>^Aauth=Bearer <token>^A^A` (RFC 7628 §3.1); the authzid is a
/// GS2 saslname, so `,` and `=` are escaped (RFC 5801 §4).
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> Zeroizing<Vec<u8>> {
    let authzid = user.replace('=', "=3D").replace(',', "=2C");
    Zeroizing::new(
        format!("n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
            .into_bytes(),
    )
}

/// Whether a token or user name can be put into a SASL message (no separators, no line breaks).
pub fn is_clean(text: &str) -> bool {
    !text.contains(['\x01', '\r', '\n', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_matches_googles_example() {
        // https://developers.google.com/gmail/imap/xoauth2-protocol
        let message = xoauth2(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        );
        assert_eq!(
            message.as_slice(),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_matches_rfc7628_and_escapes_the_authzid() {
        // RFC 7628 §4.1
        let message = oauthbearer(
            "user@example.com",
            "server.example.com",
            143,
            "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==",
        );
        assert_eq!(
            message.as_slice(),
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==\x01\x01"
        );
        let escaped = oauthbearer("a,b=c", "h", 1, "t");
        assert!(escaped.starts_with(b"n,a=a=2Cb=3Dc,\x01"));
        assert!(!is_clean("tok\x01en"));
        assert!(is_clean("ya29.token"));
    }
}
