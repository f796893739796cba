//! Writes the seed corpus of the proxy's xDS fuzz target (`proxy/tests/fuzz_xds.rs`): every
//! distinct Listener, RouteConfiguration, Cluster and ClusterLoadAssignment the controller
//! generates for `examples/local/` and for each directory of the shared Istio corpus (a client
//! and a server sidecar per namespace), prost-encoded, as `crates/fuzz/corpus/xds-<type>/ctl-*.pb`.
//!
//! ```text
//! cargo run -p weft-controller --example fuzz_xds_seeds
//! ```
//!
//! Files written by an earlier run (`ctl-*.pb`) are replaced; hand-made seeds are left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use weft_controller::model::{MeshSettings, Model};
use weft_controller::source::ConfigSet;
use weft_controller::source::local::{load_directory, yaml_files};
use weft_controller::xds::{Proxy, generate};
use weft_xds::type_url;

/// At most this many seeds per type, spread over the sizes (the largest route tables of the
/// corpus are bigger than the fuzzer's 64 KiB input cap and are left out).
const PER_TYPE: usize = 48;
const MAX_SEED: usize = 48 * 1024;

fn main() -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = vec![workspace.join("examples/local")];
    let istio = workspace.join("../shared/corpus/istio");
    collect_dirs(&istio, &mut dirs)?;

    let types = [
        ("listener", type_url::LISTENER),
        ("route", type_url::ROUTE),
        ("cluster", type_url::CLUSTER),
        ("endpoint", type_url::ENDPOINT),
    ];
    // Per type: bytes → a name to file them under (deduplicated by content).
    let mut found: BTreeMap<&str, BTreeMap<Vec<u8>, String>> = BTreeMap::new();
    for dir in &dirs {
        let mut set = load_directory(dir, &ConfigSet::default())
            .with_context(|| format!("loading {}", dir.display()))?;
        if set.objects.is_empty() {
            continue;
        }
        add_services(&mut set);
        let model = Model::build(&set, &MeshSettings::default());
        let mut namespaces: Vec<String> = set.objects.keys().map(|k| k.namespace.clone()).collect();
        namespaces.push("default".to_string());
        namespaces.sort();
        namespaces.dedup();
        for namespace in &namespaces {
            for proxy in proxies(namespace) {
                for (short, url) in types {
                    for resource in generate(&model, &proxy, url) {
                        let seeds = found.entry(short).or_default();
                        for bytes in split_routes(url, resource.body.value) {
                            seeds.entry(bytes).or_insert_with(|| resource.name.clone());
                        }
                    }
                }
            }
        }
    }

    for (short, _) in types {
        let out = workspace.join(format!("crates/fuzz/corpus/xds-{short}"));
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for entry in std::fs::read_dir(&out)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with("ctl-") && n.ends_with(".pb")) {
                std::fs::remove_file(&path)?;
            }
        }
        let mut seeds: Vec<(Vec<u8>, String)> = found
            .remove(short)
            .unwrap_or_default()
            .into_iter()
            .filter(|(bytes, _)| bytes.len() <= MAX_SEED)
            .collect();
        seeds.sort_by_key(|(bytes, name)| (bytes.len(), name.clone()));
        let total = seeds.len();
        let step = total.div_ceil(PER_TYPE).max(1);
        let chosen: Vec<_> = seeds.into_iter().step_by(step).collect();
        for (bytes, name) in &chosen {
            let file = out.join(format!(
                "ctl-{}-{:08x}.pb",
                sanitize(name),
                fnv(bytes) as u32
            ));
            std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
        }
        println!(
            "xds-{short}: {} of {total} distinct resources written",
            chosen.len()
        );
    }
    Ok(())
}

/// Local mode knows only the services of ServiceEntries: give every host that a
/// VirtualService names (or routes to) a ServiceEntry with HTTP ports 80 and 9080 and one
/// endpoint per version `v1`..`v3`, so that its routes and subsets are generated.
fn add_services(set: &mut ConfigSet) {
    use std::collections::BTreeSet;
    use weft_api::ConfigObject;
    let mut hosts = BTreeSet::new();
    for (key, object) in set.objects() {
        if let ConfigObject::VirtualService(vs) = object {
            let destinations = vs.spec.http.iter().flat_map(|http| &http.route);
            for host in vs
                .spec
                .hosts
                .iter()
                .chain(destinations.map(|d| &d.destination.host))
            {
                if !host.contains('*') && !host.is_empty() {
                    let fqdn =
                        weft_api::host::resolve_short_name(host, &key.namespace, "cluster.local");
                    hosts.insert((key.namespace.clone(), fqdn));
                }
            }
        }
    }
    let mut yaml = String::new();
    for (i, (namespace, host)) in hosts.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: fuzz-seed-{i}, namespace: {namespace}}}\n\
             spec: {{hosts: [{host:?}], location: MESH_INTERNAL, resolution: STATIC, \
             ports: [{{number: 9080, name: http, protocol: HTTP}}, {{number: 80, name: http-80, protocol: HTTP}}], \
             endpoints: [{{address: 10.1.0.1, labels: {{version: v1}}}}, \
             {{address: 10.1.0.2, labels: {{version: v2}}}}, {{address: 10.1.0.3, labels: {{version: v3}}}}]}}\n"
        ));
    }
    let empty = ConfigSet::default();
    weft_controller::source::local::load_text(
        set,
        Path::new("fuzz-seed-services.yaml"),
        &yaml,
        &empty,
    );
    if let Some(errors) = set.errors.get("fuzz-seed-services.yaml") {
        eprintln!("synthetic ServiceEntries rejected: {errors:#?}");
    }
}

/// A route table larger than 8 KiB (the corpus directories make tables of dozens of virtual
/// hosts) becomes several tables of four of its virtual hosts each: smaller seeds, each with
/// routes of every shape the controller generates.
fn split_routes(url: &str, bytes: Vec<u8>) -> Vec<Vec<u8>> {
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
    use prost::Message as _;
    if url != type_url::ROUTE || bytes.len() <= 8 * 1024 {
        return vec![bytes];
    }
    let Ok(table) = RouteConfiguration::decode(bytes.as_slice()) else {
        return vec![bytes];
    };
    table
        .virtual_hosts
        .chunks(4)
        .map(|hosts| {
            RouteConfiguration {
                virtual_hosts: hosts.to_vec(),
                ..table.clone()
            }
            .encode_to_vec()
        })
        .collect()
}

/// A client sidecar and a server sidecar (app port 9080, bookinfo-like labels) in `namespace`.
fn proxies(namespace: &str) -> [Proxy; 2] {
    let client = Proxy {
        instance_ips: vec!["127.0.0.1".to_string()],
        ..Proxy::sidecar(namespace)
    };
    let mut server = client.clone();
    server.app_port = Some(9080);
    server.labels = [("app", "reviews"), ("version", "v1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    [client, server]
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !yaml_files(dir)?.is_empty() {
        out.push(dir.to_path_buf());
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        collect_dirs(&sub, out)?;
    }
    Ok(())
}

fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.chars().take(60).collect()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
