//! Which `Host` names a request may carry: the defence against DNS rebinding (see the
//! module doc of [`super`]).

use super::*;

/// Which `Host` names a request may carry (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HostCheck {
    /// `None`: any (a non-loopback address and no `--http-allow-host`).
    pub(super) allowed: Option<AllowedHosts>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct AllowedHosts {
    /// The address listened on.
    pub(super) bound: IpAddr,
    /// `--http-allow-host` names, lower case.
    pub(super) names: Vec<String>,
}

impl HostCheck {
    pub(super) fn new(config: &HttpConfig) -> Self {
        let checked = config.addr.ip().is_loopback() || !config.allowed_hosts.is_empty();
        Self {
            allowed: checked.then(|| AllowedHosts {
                bound: config.addr.ip(),
                names: config
                    .allowed_hosts
                    .iter()
                    .map(|name| name.to_ascii_lowercase())
                    .collect(),
            }),
        }
    }

    /// `Err` with the host named, if it is not one to answer.
    pub(super) fn check<B>(&self, request: &Request<B>) -> Result<(), String> {
        let Some(allowed) = &self.allowed else {
            return Ok(());
        };
        // An absolute URI names the host the client meant, whatever `Host` says.
        if let Some(authority) = request.uri().authority()
            && !allowed.allows(authority.as_str())
        {
            return Err(authority.as_str().to_owned());
        }
        for value in request.headers().get_all(header::HOST) {
            let host = String::from_utf8_lossy(value.as_bytes());
            if !allowed.allows(&host) {
                return Err(host.into_owned());
            }
        }
        Ok(())
    }
}

impl AllowedHosts {
    /// Whether `host` (a `Host` value: a name or address, maybe with a port) is one to answer.
    pub(super) fn allows(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        // "localhost." is "localhost" to a resolver.
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if name == "localhost" {
            return true;
        }
        if let Ok(ip) = name.parse::<IpAddr>()
            && (ip.is_loopback() || ip == self.bound)
        {
            return true;
        }
        self.names.contains(&name)
    }
}

/// The name or address in a `Host` value, without its port and without the brackets of an IPv6
/// address; `None` when it is not of that form.
pub(super) fn host_name(host: &str) -> Option<&str> {
    let port_ok =
        |port: &str| (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return (after.is_empty() || after.strip_prefix(':').is_some_and(port_ok)).then_some(ip);
    }
    match host.rsplit_once(':') {
        Some((name, port)) => port_ok(port).then_some(name),
        None => Some(host),
    }
}
