//! Container IDs: they name a directory under the state root, so they must never be able to
//! step out of it or confuse tools that print them.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("invalid container id: empty")]
    Empty,
    #[error("invalid container id {0:?}: longer than {MAX_ID_LEN} characters")]
    TooLong(String),
    #[error("invalid container id {0:?}: ids may not start with \".\"")]
    Dots(String),
    #[error("invalid container id {0:?}: only letters, digits, '_', '+', '-' and '.' are allowed")]
    BadChar(String),
}

/// runc allows the same character set; 1024 keeps a state path well under PATH_MAX.
pub const MAX_ID_LEN: usize = 1024;

pub fn validate(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(id.chars().take(64).collect()));
    }
    // Names starting with a dot are kept for tally's own entries in the state root.
    if id.starts_with('.') {
        return Err(IdError::Dots(id.to_string()));
    }
    let ok = id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if !ok {
        return Err(IdError::BadChar(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_callers_generate() {
        for id in ["a", "busybox-1", "c0ffee_+.x", &"f".repeat(64)] {
            assert_eq!(validate(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn refuses_paths_and_oddities() {
        assert_eq!(validate(""), Err(IdError::Empty));
        assert!(matches!(validate(".."), Err(IdError::Dots(_))));
        assert!(matches!(validate("."), Err(IdError::Dots(_))));
        assert!(matches!(validate("../x"), Err(IdError::Dots(_))));
        assert!(matches!(validate(".hidden"), Err(IdError::Dots(_))));
        for id in ["a/b", "x/../y", "a b", "a\nb", "ü", "a\0"] {
            assert!(matches!(validate(id), Err(IdError::BadChar(_))), "{id:?}");
        }
        assert!(matches!(validate(&"x".repeat(2000)), Err(IdError::TooLong(_))));
    }
}
