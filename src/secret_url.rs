//! URLs that carry secrets (store URLs, a task's database or Redis URL): `${VAR}`
//! anywhere in one is replaced by the environment variable `VAR`, so passwords stay out
//! of config files, and [`redact`] hides the password before a URL is logged. A leaf:
//! the store and the tasks both use it (docs/architecture.md).

/// Why `${…}` in a URL could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${VAR}` names a variable that is not set.
    #[error("the environment variable {0:?} used in the URL is not set")]
    MissingVariable(String),
    /// `${` without a closing `}`, or an empty name.
    #[error("the URL has an unfinished ${{…}} at byte {0}")]
    BadVariable(usize),
}

/// Replaces each `${NAME}` with `lookup(NAME)`.
pub fn expand(url: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut expanded = String::with_capacity(url.len());
    let mut rest = url;
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        expanded.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .filter(|end| *end > 0)
            .ok_or(ExpandError::BadVariable(offset + start))?;
        let name = &after[..end];
        let value = lookup(name).ok_or_else(|| ExpandError::MissingVariable(name.to_owned()))?;
        expanded.push_str(&value);
        let consumed = start + 2 + end + 1;
        offset += consumed;
        rest = &rest[consumed..];
    }
    expanded.push_str(rest);
    Ok(expanded)
}

/// `url` with the password (between `:` and `@` in the authority) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_names_missing_ones() {
        let lookup = |name: &str| (name == "PASSWORD").then(|| "s3cret".to_owned());
        assert_eq!(
            expand("mysql://root:${PASSWORD}@h/db", lookup),
            Ok("mysql://root:s3cret@h/db".to_owned())
        );
        assert_eq!(
            expand("mysql://root:${NOPE}@h/db", lookup),
            Err(ExpandError::MissingVariable("NOPE".to_owned()))
        );
        assert_eq!(
            expand("mysql://root:${PASSWORD@h/db", lookup),
            Err(ExpandError::BadVariable(13))
        );
    }
}
