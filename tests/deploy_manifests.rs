//! `deploy/k8s/` cannot drift from the binary: every manifest parses, every
//! container's command line and every exec probe goes through the real
//! CLI's argument parser (`src/main.rs` is compiled into this test), and
//! what the manifests say of each other holds (ports, the secret, the
//! headless service, the registry address, scrape annotations).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Parser;
use yaml_rust2::{Yaml, YamlLoader};

#[allow(dead_code, clippy::all)]
#[path = "../src/main.rs"]
mod capactor_main;

/// Commands and flags the manifests use that another branch adds (issue
/// 11's registry work, branch `fleet`). A command line refused only for
/// one of these is reported, not failed; once the binary has them, the
/// test fails until they are taken off this list, so it never hides drift
/// for long.
const PENDING_SUBCOMMANDS: &[&str] = &[];
const PENDING_FLAGS: &[&str] = &[];

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s")
}

/// Every document of every manifest, with the file it came from.
fn documents() -> Vec<(String, Yaml)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/k8s");
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let docs = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
        for d in docs {
            assert!(!d.is_null(), "{name}: an empty document");
            out.push((name.clone(), d));
        }
    }
    out
}

fn s<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, is {y:?}"))
}

fn kind(d: &Yaml) -> &str {
    s(&d["kind"], "kind")
}

fn name(d: &Yaml) -> &str {
    s(&d["metadata"]["name"], "metadata.name")
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

/// A container's argv with `$(VAR)` expanded as the kubelet would: from
/// its `env` values, and a field reference as an example pod's value.
fn argv(container: &Yaml, command: &Yaml, args: &Yaml) -> Vec<String> {
    let mut vars = BTreeMap::new();
    for e in list(&container["env"]) {
        let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Yaml::String(v), _) => v.clone(),
            (_, Yaml::String(field)) => match field.as_str() {
                "metadata.name" => "capactor-worker-0".to_owned(),
                "metadata.namespace" => "capactor".to_owned(),
                other => panic!("field reference {other} not modelled by this test"),
            },
            _ => panic!("env entry without a value: {e:?}"),
        };
        vars.insert(s(&e["name"], "env name").to_owned(), value);
    }
    list(command)
        .iter()
        .chain(list(args))
        .map(|a| {
            let mut a = match a {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                other => panic!("argument {other:?} is not a string"),
            };
            for (k, v) in &vars {
                a = a.replace(&format!("$({k})"), v);
            }
            assert!(!a.contains("$("), "unexpanded variable in {a:?}");
            a
        })
        .collect()
}

/// Why the CLI refused `argv`, unless it was only for something
/// [`PENDING_SUBCOMMANDS`] / [`PENDING_FLAGS`] names, in which case the
/// rest of the line is checked and the pending part returned.
enum Parsed {
    Ok,
    Pending(String),
    Refused(String),
}

fn parse(argv: &[String]) -> Parsed {
    let err = match capactor_main::Cli::try_parse_from(argv) {
        Ok(_) => return Parsed::Ok,
        Err(e) => e,
    };
    let text = err.to_string();
    if err.kind() == clap::error::ErrorKind::InvalidSubcommand {
        if let Some(sub) = PENDING_SUBCOMMANDS
            .iter()
            .find(|s| argv.get(1).map(String::as_str) == Some(**s))
        {
            return Parsed::Pending(format!("subcommand `{sub}`"));
        }
    }
    if err.kind() == clap::error::ErrorKind::UnknownArgument {
        if let Some(flag) = PENDING_FLAGS
            .iter()
            .find(|f| text.contains(&format!("'{f}'")))
        {
            // Check the rest of the line without the flag and its value.
            let i = argv.iter().position(|a| a == flag).unwrap();
            let mut rest = argv.to_vec();
            rest.drain(i..(i + 2).min(argv.len()));
            return match parse(&rest) {
                Parsed::Ok => Parsed::Pending(format!("flag `{flag}`")),
                Parsed::Pending(more) => Parsed::Pending(format!("flag `{flag}`, {more}")),
                refused => refused,
            };
        }
    }
    Parsed::Refused(text)
}

/// The value after `flag` in `argv`.
fn flag<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

fn port_of(addr: &str) -> i64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn every_manifest_parses_and_every_command_line_is_accepted_by_the_cli() {
    let docs = documents();
    let mut refused = Vec::new();
    let mut pending = BTreeSet::new();
    let mut checked = 0;
    for (file, d) in &docs {
        let pod = &d["spec"]["template"]["spec"];
        for c in list(&pod["containers"])
            .iter()
            .chain(list(&pod["initContainers"]))
        {
            let cname = s(&c["name"], "container name");
            let mut lines = vec![("command", argv(c, &c["command"], &c["args"]))];
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                let exec = &c[probe]["exec"]["command"];
                if !exec.is_badvalue() {
                    lines.push((probe, argv(c, exec, &Yaml::Null)));
                }
            }
            for (what, line) in lines {
                assert_eq!(
                    line.first().map(String::as_str),
                    Some("capactor"),
                    "{file} {cname} {what}: runs the capactor binary"
                );
                checked += 1;
                match parse(&line) {
                    Parsed::Ok => {}
                    Parsed::Pending(p) => {
                        pending.insert(p.clone());
                        eprintln!(
                            "PENDING {file} {cname} {what}: {p} is not in this binary yet \
                             (branch fleet): {}",
                            line.join(" ")
                        );
                    }
                    Parsed::Refused(e) => {
                        refused.push(format!("{file} {cname} {what}: {}\n{e}", line.join(" ")))
                    }
                }
            }
        }
    }
    assert!(
        checked >= 6,
        "two containers, each with a command and two probes"
    );
    assert!(
        refused.is_empty(),
        "the CLI refuses these manifest command lines:\n{}",
        refused.join("\n")
    );
    for sub in PENDING_SUBCOMMANDS {
        assert!(
            pending.iter().any(|p| p.contains(&format!("`{sub}`"))),
            "`capactor {sub}` now parses: take it off PENDING_SUBCOMMANDS in {}",
            file!()
        );
    }
    for f in PENDING_FLAGS {
        assert!(
            pending.iter().any(|p| p.contains(&format!("`{f}`"))),
            "`{f}` now parses: take it off PENDING_FLAGS in {}",
            file!()
        );
    }
}

#[test]
fn the_manifests_agree_with_each_other() {
    let docs = documents();
    let find = |k: &str, n: &str| {
        docs.iter()
            .map(|(_, d)| d)
            .find(|d| kind(d) == k && name(d) == n)
            .unwrap_or_else(|| panic!("no {k} {n} in deploy/k8s"))
    };
    let namespace = name(find("Namespace", "capactor"));
    for (file, d) in &docs {
        if !matches!(kind(d), "Namespace" | "Kustomization") {
            assert_eq!(
                d["metadata"]["namespace"].as_str(),
                Some(namespace),
                "{file}: {} {} in the capactor namespace",
                kind(d),
                name(d)
            );
        }
    }
    let secret = find("Secret", "capactor-token");
    assert!(secret["stringData"]["token"].as_str().is_some());

    // The registry: a Deployment behind a Service on its RPC port.
    let registry = find("Deployment", "capactor-registry");
    let registry_svc = find("Service", "capactor-registry");
    let (registry_argv, _) = workload(registry, "registry");
    let registry_port = port_of(flag(&registry_argv, "--listen").unwrap());
    assert!(
        list(&registry_svc["spec"]["ports"])
            .iter()
            .any(|p| p["port"].as_i64() == Some(registry_port)),
        "the registry Service exposes its --listen port {registry_port}"
    );

    // Workers: a StatefulSet whose serviceName is a headless Service,
    // joining the registry's Service, advertising their stable pod names.
    let workers = find("StatefulSet", "capactor-worker");
    let service_name = s(&workers["spec"]["serviceName"], "serviceName");
    let headless = find("Service", service_name);
    assert_eq!(
        headless["spec"]["clusterIP"].as_str(),
        Some("None"),
        "the workers' Service is headless"
    );
    let (worker_argv, _) = workload(workers, "worker");
    let join = flag(&worker_argv, "--join").expect("workers join the registry");
    assert_eq!(
        join,
        format!("capactor-registry.{namespace}.svc.cluster.local:{registry_port}")
    );
    let advertise = flag(&worker_argv, "--advertise").unwrap();
    assert_eq!(
        advertise,
        format!(
            "capactor-worker-0.{service_name}.{namespace}.svc.cluster.local:{}",
            port_of(flag(&worker_argv, "--listen").unwrap())
        ),
        "a worker advertises its stable name"
    );
    assert_eq!(flag(&worker_argv, "--name"), Some("capactor-worker-0"));
}

/// Checks what every capactor workload needs, and returns its container's
/// command line and the container.
fn workload<'a>(d: &'a Yaml, container: &str) -> (Vec<String>, &'a Yaml) {
    let what = format!("{} {}", kind(d), name(d));
    let template = &d["spec"]["template"];
    let pod = &template["spec"];
    let c = list(&pod["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some(container))
        .unwrap_or_else(|| panic!("{what}: no container {container}"));
    let line = argv(c, &c["command"], &c["args"]);

    // Runs as a non-root user, read-only, without privileges.
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true),
        "{what}"
    );
    let sc = &c["securityContext"];
    assert_eq!(
        sc["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{what}"
    );
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{what}");

    // The selector picks the template's pods.
    for (k, v) in d["spec"]["selector"]["matchLabels"].as_hash().unwrap() {
        assert_eq!(
            &template["metadata"]["labels"][k.as_str().unwrap()],
            v,
            "{what}"
        );
    }

    // The token file is in a mounted volume of the token Secret.
    let token_file = flag(&line, "--token-file").unwrap_or_else(|| panic!("{what}: a token"));
    let mount = list(&c["volumeMounts"])
        .iter()
        .find(|m| token_file.starts_with(s(&m["mountPath"], "mountPath")))
        .unwrap_or_else(|| panic!("{what}: {token_file} is in no mounted volume"));
    let volume = list(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(
        volume["secret"]["secretName"].as_str(),
        Some("capactor-token"),
        "{what}: the token comes from the Secret"
    );

    // Metrics: the --metrics port is a container port, and the pod's
    // scrape annotations point at it.
    let metrics_port =
        port_of(flag(&line, "--metrics").unwrap_or_else(|| panic!("{what}: --metrics")));
    let ports = list(&c["ports"]);
    assert!(
        ports
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(metrics_port)),
        "{what}: the metrics port {metrics_port} is declared"
    );
    let ann = &template["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"), "{what}");
    assert_eq!(
        ann["prometheus.io/port"].as_str(),
        Some(metrics_port.to_string().as_str()),
        "{what}"
    );
    assert_eq!(
        ann["prometheus.io/path"].as_str(),
        Some("/metrics"),
        "{what}"
    );

    // Readiness: `capactor health` on the port the container listens on,
    // with the same token.
    let listen_port = port_of(flag(&line, "--listen").unwrap());
    assert!(
        ports
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(listen_port)),
        "{what}: the RPC port {listen_port} is declared"
    );
    let probe = argv(c, &c["readinessProbe"]["exec"]["command"], &Yaml::Null);
    assert_eq!(probe.get(1).map(String::as_str), Some("health"), "{what}");
    assert_eq!(
        probe.get(2).map(|a| port_of(a)),
        Some(listen_port),
        "{what}"
    );
    assert_eq!(flag(&probe, "--token-file"), Some(token_file), "{what}");
    (line, c)
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let docs = documents();
    let (_, k) = docs
        .iter()
        .find(|(_, d)| kind(d) == "Kustomization")
        .expect("deploy/k8s/kustomization.yaml");
    let listed: BTreeSet<&str> = list(&k["resources"])
        .iter()
        .map(|r| s(r, "resource"))
        .collect();
    let files: BTreeSet<&str> = docs
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| *f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files);
}

#[test]
fn the_dockerfile_runs_the_binary_as_a_non_root_user_from_a_slim_image() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: build, then runtime");
    assert!(
        froms[0].contains("rust:") && froms[0].ends_with(" AS build"),
        "{}",
        froms[0]
    );
    assert!(
        froms[1].contains("distroless") || froms[1].contains("slim"),
        "{}",
        froms[1]
    );
    let runtime = &text[text.find(froms[1]).unwrap()..];
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets a user");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    assert!(runtime.contains("ENTRYPOINT [\"capactor\"]"));
    assert!(text.contains("cargo build --release --locked --bin capactor"));
}
