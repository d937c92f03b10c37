//! Where `http` jobs added through the API may connect (docs/threat-model.md, "API
//! clients by token"): an API token must not be a way to reach the cloud metadata
//! service or the host's own loopback services (server-side request forgery).
//!
//! [`OutboundPolicy`] sorts every address a request would connect to:
//! - **never**: link-local (`169.254.0.0/16`, `fe80::/10`, where cloud metadata
//!   services live), other metadata addresses (`100.100.100.200`, `fd00:ec2::254`),
//!   unspecified (`0.0.0.0` reaches loopback), broadcast and multicast;
//! - **only when listed** in `[api] http_allow`, by host name or CIDR: loopback,
//!   private (RFC 1918, `fc00::/7`) and shared (`100.64.0.0/10`) ranges;
//! - everything else: allowed.
//!
//! The `http` task checks the URL of every hop by hand (redirects are followed one at
//! a time), and its client resolves names through [`GuardedResolver`], which drops the
//! addresses the policy refuses, so a name that resolves to a public address when
//! checked and to 127.0.0.1 when connecting (DNS rebinding) gets no connection.
//! Jobs from the config files are the operator's own and are not checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use ipnet::IpNet;

/// One `[api] http_allow` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowRule {
    /// A host name as URLs write it (lower case), whose addresses are all allowed.
    Host(String),
    /// Addresses in a range.
    Net(IpNet),
}

impl AllowRule {
    /// Reads `"10.0.0.0/8"`, `"127.0.0.1"` (one address) or `"db.internal"`.
    pub fn parse(text: &str) -> Result<AllowRule, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(AllowRule::Net(net.trunc()));
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(AllowRule::Net(IpNet::from(address)));
        }
        let valid = !text.is_empty()
            && text
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-._".contains(&byte));
        if valid {
            Ok(AllowRule::Host(text.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{text:?} is neither a host name nor an address or CIDR range such as \"10.0.0.0/8\""
            ))
        }
    }
}

/// Which addresses restricted requests may reach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Vec<AllowRule>,
}

/// Why an address is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Link-local, metadata, unspecified, broadcast or multicast: never reachable.
    #[error(
        "{address} is {class}; http jobs added through the API may never connect there \
         (cloud metadata services live there)"
    )]
    Never {
        /// The address.
        address: IpAddr,
        /// What kind of address it is.
        class: &'static str,
    },
    /// Loopback or private, and not listed.
    #[error(
        "{address} is {class}; http jobs added through the API reach it only when \
         [api] http_allow lists it (or the host {host:?})"
    )]
    NotListed {
        /// The address.
        address: IpAddr,
        /// What kind of address it is.
        class: &'static str,
        /// The host name it was reached by.
        host: String,
    },
}

impl OutboundPolicy {
    /// A policy allowing the loopback and private addresses `allow` lists.
    pub fn new(allow: Vec<AllowRule>) -> OutboundPolicy {
        OutboundPolicy { allow }
    }

    /// The rules as `[api] http_allow` writes them.
    pub fn rules(&self) -> Vec<String> {
        self.allow
            .iter()
            .map(|rule| match rule {
                AllowRule::Host(name) => name.clone(),
                AllowRule::Net(net) => net.to_string(),
            })
            .collect()
    }

    /// Whether `host` (a URL's host, lower case) may connect to `address`.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), Refusal> {
        let address = canonical(address);
        if let Some(class) = never_class(address) {
            return Err(Refusal::Never { address, class });
        }
        let Some(class) = restricted_class(address) else {
            return Ok(());
        };
        let listed = self.allow.iter().any(|rule| match rule {
            AllowRule::Host(name) => name == host,
            AllowRule::Net(net) => net.contains(&address),
        });
        if listed {
            Ok(())
        } else {
            Err(Refusal::NotListed {
                address,
                class,
                host: host.to_owned(),
            })
        }
    }
}

/// The refusal of a URL whose host is an address no restricted request may ever
/// reach (link-local, metadata), so that adding such a job fails at once; `None` for
/// anything else, names included (those are checked when the job runs).
pub fn never_reachable(url: &str) -> Option<Refusal> {
    let url = reqwest::Url::parse(url.trim()).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let address = canonical(host.parse::<IpAddr>().ok()?);
    never_class(address).map(|class| Refusal::Never { address, class })
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn never_class(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => {
            if v4.is_link_local() {
                Some("a link-local address")
            } else if v4 == Ipv4Addr::new(100, 100, 100, 200) {
                Some("a cloud metadata address")
            } else if v4.is_unspecified() || v4.octets()[0] == 0 {
                Some("an unspecified address (it reaches this host)")
            } else if v4.is_broadcast() || v4.is_multicast() {
                Some("a broadcast or multicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            if (segments[0] & 0xffc0) == 0xfe80 {
                Some("a link-local address")
            } else if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("a cloud metadata address")
            } else if v6.is_unspecified() {
                Some("an unspecified address (it reaches this host)")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

fn restricted_class(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => {
            let [first, second, ..] = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() {
                Some("a private address")
            } else if first == 100 && (64..128).contains(&second) {
                Some("a shared (carrier-grade NAT) address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some("a loopback address")
            } else if (v6.segments()[0] & 0xfe00) == 0xfc00 {
                Some("a private (unique local) address")
            } else {
                None
            }
        }
    }
}

/// The client's resolver for restricted requests: the system's, with the addresses the
/// policy refuses dropped; a name left with none fails with the first refusal.
#[derive(Clone, Debug)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: Arc<OutboundPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let lookup = host.clone();
            let found = tokio::task::spawn_blocking(move || {
                (lookup.as_str(), 0).to_socket_addrs().map(Vec::from_iter)
            })
            .await
            .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)??;
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = found
                .into_iter()
                .partition(|address| policy.check(&host, address.ip()).is_ok());
            if allowed.is_empty() {
                if let Some(first) = refused.first() {
                    let refusal = policy.check(&host, first.ip()).err();
                    let message = refusal.map_or_else(String::new, |refusal| refusal.to_string());
                    return Err(message.into());
                }
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn metadata_and_link_local_are_never_reachable() {
        let open = OutboundPolicy::new(vec![
            AllowRule::parse("0.0.0.0/0").unwrap_or(AllowRule::Host(String::new())),
            AllowRule::Host("metadata.google.internal".to_owned()),
        ]);
        for address in [
            "169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "0.0.0.0",
            "::ffff:169.254.169.254",
        ] {
            assert!(
                matches!(
                    open.check("metadata.google.internal", ip(address)),
                    Err(Refusal::Never { .. })
                ),
                "{address}"
            );
        }
    }

    #[test]
    fn loopback_and_private_only_when_listed() {
        let none = OutboundPolicy::default();
        for address in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "fd12::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                matches!(none.check("x", ip(address)), Err(Refusal::NotListed { .. })),
                "{address}"
            );
        }
        assert!(none.check("example.com", ip("93.184.216.34")).is_ok());
        let listed = OutboundPolicy::new(
            ["10.0.0.0/8", "127.0.0.1", "db.internal"]
                .iter()
                .filter_map(|text| AllowRule::parse(text).ok())
                .collect(),
        );
        assert!(listed.check("x", ip("10.9.9.9")).is_ok());
        assert!(listed.check("x", ip("127.0.0.1")).is_ok());
        assert!(listed.check("x", ip("127.0.0.2")).is_err());
        assert!(listed.check("db.internal", ip("192.168.1.1")).is_ok());
        assert!(AllowRule::parse("not a host/").is_err());
    }
}
