//! An endpoint URL as a request target: parsed once, kept by `HttpSender`.

use std::net::IpAddr;
use std::sync::Arc;

/// An endpoint URL as a request target, normalised by the URL parser (so `0x7f.1` is already
/// `127.0.0.1`).
#[derive(Debug)]
pub(super) struct Target {
    pub(super) secure: bool,
    /// The host as resolved and named to TLS: no brackets around an IPv6 address.
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) literal: Option<IpAddr>,
    /// The `Host` header: the host, and the port unless it is the scheme's default.
    pub(super) host_header: String,
    /// `scheme://host:port`, for messages and the pool.
    pub(super) authority: Arc<str>,
    /// The path and query (never the fragment).
    pub(super) path: String,
}

/// Parses an endpoint URL into a request target.
pub(super) fn parse_target(url: &str) -> Result<Target, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let secure = match parsed.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(format!("the scheme {other} is not http or https")),
    };
    let (host, literal) = match parsed.host() {
        Some(url::Host::Domain(name)) => (name.to_owned(), None),
        Some(url::Host::Ipv4(v4)) => (v4.to_string(), Some(IpAddr::V4(v4))),
        Some(url::Host::Ipv6(v6)) => (v6.to_string(), Some(IpAddr::V6(v6))),
        None => return Err(format!("{url} has no host")),
    };
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| format!("{url} has no port"))?;
    // The parser drops a scheme's default port, so any port left is named.
    let host_text = parsed.host_str().unwrap_or(&host);
    let host_header = match parsed.port() {
        Some(port) => format!("{host_text}:{port}"),
        None => host_text.to_owned(),
    };
    let scheme = if secure { "https" } else { "http" };
    let mut path = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok(Target {
        secure,
        authority: Arc::from(format!("{scheme}://{host_text}:{port}")),
        host,
        port,
        literal,
        host_header,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_the_schemes_default() {
        let host = |url: &str| parse_target(url).unwrap().host_header;
        assert_eq!(host("http://crm.example.com/hooks"), "crm.example.com");
        assert_eq!(host("http://crm.example.com:80/hooks"), "crm.example.com");
        assert_eq!(host("http://127.0.0.1:8080/hooks"), "127.0.0.1:8080");
        assert_eq!(host("https://crm.example.com:443/"), "crm.example.com");
        assert_eq!(host("https://crm.example.com:80/"), "crm.example.com:80");
        assert_eq!(host("http://[::1]:3000/"), "[::1]:3000");
    }

    #[test]
    fn a_target_keeps_path_and_query_drops_the_fragment_and_knows_its_port() {
        let target = parse_target("HTTPS://Crm.Example.com/hooks/in?x=1&y=%20#frag").unwrap();
        assert_eq!(
            (target.secure, target.host.as_str(), target.port),
            (true, "crm.example.com", 443)
        );
        assert_eq!(target.path, "/hooks/in?x=1&y=%20");
        assert_eq!(parse_target("http://0x7f.1:81").unwrap().path, "/");
        let v6 = parse_target("http://[::1]:3000/").unwrap();
        assert_eq!((v6.host.as_str(), v6.literal.is_some()), ("::1", true));
        assert!(parse_target("ftp://crm.example.com/").is_err());
    }
}
