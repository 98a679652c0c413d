//! The user documentation against the code it describes: docs/ names every configuration
//! key (nested ones too), query key, field and operator, and C function the code has, its
//! examples run, its links stay inside the repository, and no file of the repository
//! refers to anything outside it. Each list is read from the code (or the header
//! generated from it), so a key, operator or function added without its documentation
//! fails here.
use presence::{CloseReason, ConnectionId, Engine, ErrorKind};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The part of a source `text` from `start` to the first `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no `{start}` in the source read"));
    let rest = &text[from..];
    &rest[..rest.find(end).unwrap_or_else(|| panic!("no `{end}` after `{start}`"))]
}

/// The text of `## heading` in `md`, up to the next `## `.
fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md.find(&format!("\n## {heading}\n")).unwrap_or_else(|| panic!("no section `## {heading}`"));
    let body = &md[start + heading.len() + 5..];
    body.split("\n## ").next().unwrap_or(body)
}

/// The first cell of each row of the Markdown tables in `text` (header rows included).
fn first_cells(text: &str) -> Vec<&str> {
    text.lines().filter_map(|l| l.strip_prefix('|')).filter_map(|l| l.split('|').next()).collect()
}

/// Every `` `name` `` quoted in `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The repository's files matching `pattern`, as git lists them.
fn tracked(pattern: &str) -> Vec<String> {
    let out = Command::new("git").args(["ls-files", pattern]).output().expect("git runs");
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

// ----- links and the configuration ------------------------------------------------------

/// Every relative link in the README and docs/ points at a file of the repository, and
/// nothing refers to a document outside it.
#[test]
fn docs_links_stay_inside_the_repository() {
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("CHANGELOG.md")];
    files.extend(
        fs::read_dir("docs")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    // Every Markdown document named anywhere (prose or code) is one of the repository's own.
    let own: Vec<String> =
        tracked("*.md").iter().map(|p| p.rsplit('/').next().unwrap_or(p).to_owned()).collect();
    let root = fs::canonicalize(".").unwrap();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)));
        for named in words.filter(|w| w.ends_with(".md")) {
            let name = named.rsplit('/').next().unwrap();
            assert!(
                own.iter().any(|o| o == name),
                "{} names {named}, which is not in the repository",
                file.display()
            );
        }
        // Links in prose only: code blocks hold C++ lambdas like `[](const Event &e)`.
        let prose: String = text.split("```").step_by(2).collect();
        for link in prose.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            if link.starts_with("http") || link.starts_with('#') {
                continue;
            }
            let target = file.parent().unwrap().join(link.split('#').next().unwrap());
            assert!(target.exists(), "{}: link to {link}, which does not exist", file.display());
            assert!(
                fs::canonicalize(&target).unwrap().starts_with(&root),
                "{}: link to {link}, outside the repository",
                file.display()
            );
        }
    }
}

/// docs/config.md has a section per key whose text is the rustdoc of that `Config` field.
#[test]
fn config_reference_matches_the_rustdoc() {
    let md = fs::read_to_string("docs/config.md").unwrap();
    let source = fs::read_to_string("src/config.rs").unwrap();
    let source: Vec<&str> = source.lines().collect();
    let keys = config_keys_at(&[]);
    assert!(keys.len() >= 10, "{keys:?}");
    for key in keys {
        let heading = format!("\n## `{key}`\n");
        let section =
            md.split_once(&heading).unwrap_or_else(|| panic!("docs/config.md has no section `## `{key}``")).1;
        let section = section.split("\n## ").next().unwrap().trim();
        let field = source
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("pub {key}:")))
            .unwrap_or_else(|| panic!("src/config.rs has no field {key}"));
        let mut doc: Vec<&str> = source[..field]
            .iter()
            .rev()
            .map(|l| l.trim_start())
            .take_while(|l| l.starts_with("///"))
            .map(|l| l.trim_start_matches("///").strip_prefix(' ').unwrap_or(l.trim_start_matches("///")))
            .collect();
        doc.reverse();
        assert_eq!(
            doc.join("\n").trim(),
            section,
            "the rustdoc of Config::{key} and its section in docs/config.md differ"
        );
    }
}

/// The keys the object at `path` of the config accepts, as the error message for an
/// unknown key there lists them (`[]`: the top level).
fn config_keys_at(path: &[&str]) -> Vec<String> {
    let json =
        path.iter().rev().fold(r#"{"?": 0}"#.to_owned(), |inner, key| format!(r#"{{"{key}": {inner}}}"#));
    let message = presence::Config::from_json(&json).unwrap_err().message().to_owned();
    let list =
        message.split("expected one of").nth(1).unwrap_or_else(|| panic!("unexpected message: {message}"));
    quoted(list).into_iter().map(String::from).collect()
}

/// The objects inside the configuration: each of their keys is a list item of the parent
/// key's section (so of its rustdoc too) giving its default and saying what it does.
#[test]
fn config_reference_covers_nested_keys() {
    let md = read("docs/config.md");
    for parent in ["query_budget", "cluster"] {
        let keys = config_keys_at(&[parent]);
        assert!(keys.len() >= 5, "{parent}: {keys:?}");
        let text = section(&md, &format!("`{parent}`"));
        for key in keys {
            let item = text
                .split("\n- ")
                .skip(1)
                .find(|item| item.starts_with(&format!("`{key}` (")))
                .unwrap_or_else(|| panic!("docs/config.md `{parent}` has no item \"- `{key}` (...)\""));
            assert!(
                item.contains("default") || item.contains("required"),
                "docs/config.md {parent}.{key} does not give its default: {item}"
            );
            assert!(item.contains("): "), "docs/config.md {parent}.{key} does not say what it does: {item}");
        }
    }
    // docs/cluster.md's table of the section's keys.
    let cluster = read("docs/cluster.md");
    let cells = first_cells(&cluster);
    for key in config_keys_at(&["cluster"]) {
        assert!(
            cells.iter().any(|c| c.trim() == format!("`{key}`")),
            "docs/cluster.md's key table lacks `{key}`"
        );
    }
}

/// The default of every key as `Config::default()` (and the nested objects' defaults) has
/// it, in the form docs/config.md writes it. A key without an entry here fails, so a new
/// key gets its default checked too.
fn config_default(key: &str) -> String {
    let config = presence::Config::default();
    let budget = presence::QueryBudget::default();
    let cluster = presence::ClusterConfig::new("redis://127.0.0.1/0", "node");
    let clock = |c| if c == presence::Clock::System { "\"system\"" } else { "\"manual\"" };
    let dispatch = |d| if d == presence::Dispatch::Immediate { "\"immediate\"" } else { "\"manual\"" };
    match key {
        "clock" => clock(config.clock).to_owned(),
        "dispatch" => dispatch(config.dispatch).to_owned(),
        "start_time_ms" => config.start_time_ms.to_string(),
        "last_active_refresh_ms" => config.last_active_refresh_ms.to_string(),
        "connection_timeout_ms" => config.connection_timeout_ms.to_string(),
        "offline_grace_ms" => config.offline_grace_ms.to_string(),
        "max_connections_per_user" => config.max_connections_per_user.to_string(),
        "max_subscriptions_per_connection" => config.max_subscriptions_per_connection.to_string(),
        "connection_queue_capacity" => config.connection_queue_capacity.to_string(),
        "query_limit_max" => config.query_limit_max.to_string(),
        "max_snapshot_bytes" => config.max_snapshot_bytes.to_string(),
        "pending_dispatch_capacity" => config.pending_dispatch_capacity.to_string(),
        "query_budget" | "cluster" => String::new(),
        "max_clauses" => budget.max_clauses.to_string(),
        "max_depth" => budget.max_depth.to_string(),
        "max_text_clauses" => budget.max_text_clauses.to_string(),
        "max_in_values" => budget.max_in_values.to_string(),
        "max_sort_keys" => budget.max_sort_keys.to_string(),
        "max_work" => budget.max_work.to_string(),
        "redis_url" | "node_id" => String::new(),
        "namespace" => format!("{:?}", cluster.namespace),
        "heartbeat_ms" => cluster.heartbeat_ms.to_string(),
        "lease_ms" => cluster.lease_ms.to_string(),
        "stream_retention" => cluster.stream_retention.to_string(),
        "max_pending_writes" => cluster.max_pending_writes.to_string(),
        "poll_ms" => cluster.poll_ms.to_string(),
        _ => panic!("config key {key}: add its default to config_default in tests/docs.rs"),
    }
}

/// docs/config.md states each key's default as the code has it: in the summary table, at
/// the start of the key's section, and in each nested key's item.
#[test]
fn config_reference_states_the_defaults_the_code_has() {
    assert!(presence::Config::default().cluster.is_none(), "cluster mode is off by default");
    let md = read("docs/config.md");
    for key in config_keys_at(&[]) {
        let default = config_default(&key);
        if default.is_empty() {
            continue;
        }
        let text = section(&md, &format!("`{key}`"));
        let first = text.trim_start().split("\n\n").next().unwrap_or("");
        let stated = [format!("default `{default}`"), format!("`{default}` (default)")];
        assert!(
            stated.iter().any(|s| first.contains(s)),
            "docs/config.md `{key}` does not open with its default {default}: {first}"
        );
        let row = md.lines().find(|l| l.starts_with(&format!("| [`{key}`]"))).expect("a summary row");
        assert!(
            row.split('|').nth(3).is_some_and(|c| c.contains(&format!("`{default}`"))),
            "docs/config.md's table gives {key} another default than {default}: {row}"
        );
    }
    for parent in ["query_budget", "cluster"] {
        let text = section(&md, &format!("`{parent}`"));
        for key in config_keys_at(&[parent]) {
            let default = config_default(&key);
            let item = text.split("\n- ").find(|i| i.starts_with(&format!("`{key}` ("))).expect("an item");
            let stated =
                if default.is_empty() { "required".to_owned() } else { format!("default {default}") };
            assert!(
                item.replace('`', "").contains(&stated.replace('`', "")),
                "docs/config.md {parent}.{key} does not state `{stated}`: {item}"
            );
        }
    }
}

// ----- the query language ---------------------------------------------------------------

/// The `$` operators the parser matches on, read from the patterns of its `match` arms.
fn parser_operators() -> Vec<String> {
    let source = read("src/query/parse.rs");
    let mut ops: Vec<String> = source
        .lines()
        .filter_map(|l| l.split_once("=>").map(|(pattern, _)| pattern))
        .flat_map(|pattern| pattern.split('"').skip(1).step_by(2))
        .filter(|s| s.len() > 1 && s.starts_with('$') && s[1..].bytes().all(|b| b.is_ascii_lowercase()))
        .map(String::from)
        .collect();
    ops.sort();
    ops.dedup();
    ops
}

/// The fields with a declared type per target (`Users`, `Channels`), read from the
/// source's `field_kind` match: `(Target::Users, "id" | "status") => ...`.
fn typed_fields(target: &str) -> Vec<String> {
    let source = read("src/query/mod.rs");
    let prefix = format!("(Target::{target}, ");
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .flat_map(|l| l.split(')').next().unwrap_or("").split('|'))
        .map(|name| name.trim().trim_matches('"').to_owned())
        .collect()
}

#[test]
fn query_reference_names_every_key_field_and_operator() {
    let md = read("docs/queries.md");

    // Top-level keys: the parser's list, each a row of the keys table.
    let parse = read("src/query/parse.rs");
    let keys_fn = between(&parse, "fn is_query_key", "\n}");
    let keys: Vec<&str> = keys_fn.split('"').skip(1).step_by(2).collect();
    assert!(keys.contains(&"filter_conditions") && keys.contains(&"watch"), "{keys:?}");
    let cells = first_cells(&md);
    for key in keys {
        assert!(
            cells.iter().any(|c| c.contains(&format!("`{key}`"))),
            "docs/queries.md has no row for key `{key}`"
        );
    }

    // Fields with a declared type: each named in the first column of its target's table.
    for (target, heading) in [("Users", "User fields:"), ("Channels", "Channel fields:")] {
        let fields = typed_fields(target);
        assert!(fields.len() >= 5, "{target}: {fields:?}");
        let from = md.find(heading).unwrap_or_else(|| panic!("docs/queries.md has no `{heading}`"));
        let table = md[from..].split("\n\n").nth(1).expect("a table after the heading");
        let cells = first_cells(table);
        for field in fields {
            assert!(
                cells.iter().any(|c| quoted(c).contains(&field.as_str())),
                "docs/queries.md `{heading}` has no row for `{field}`"
            );
        }
    }

    // Operators: every one the parser knows has a row of the operators table, and each
    // row's example is a filter the engine accepts.
    let operators = parser_operators();
    assert!(operators.len() >= 14, "{operators:?}");
    let table = section(&md, "Operators");
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `$")).collect();
    for op in &operators {
        assert!(
            rows.iter().any(|r| quoted(r.split('|').nth(1).unwrap_or("")).contains(&op.as_str())),
            "docs/queries.md has no operator row for `{op}`"
        );
    }
    let engine = Engine::from_json(None).unwrap();
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for named in quoted(cells[1]) {
            assert!(
                operators.iter().any(|o| o == named),
                "docs/queries.md documents `{named}`, which the parser lacks"
            );
        }
        let example = quoted(cells[4]).into_iter().next().unwrap_or_else(|| panic!("no example in {row}"));
        let query = format!(r#"{{"filter_conditions": {example}}}"#);
        if let Err(e) = engine.query_users(ConnectionId::HOST, &query) {
            panic!("docs/queries.md's example {example} is refused: {e}");
        }
    }
}

// ----- the C ABI ------------------------------------------------------------------------

/// The functions include/presence.h declares.
fn header_functions() -> Vec<String> {
    read("include/presence.h")
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()) && !l.starts_with("typedef"))
        .filter_map(|l| l.split('(').next()?.split_whitespace().last().map(|n| n.trim_start_matches('*')))
        .filter(|name| name.starts_with("presence_"))
        .map(String::from)
        .collect()
}

#[test]
fn c_abi_guide_names_every_function_of_the_header() {
    let functions = header_functions();
    assert!(
        functions.len() >= 45 && functions.contains(&"presence_cluster_status".to_owned()),
        "{functions:?}"
    );
    let guide = read("docs/c-abi.md");
    let named = quoted(&guide);
    for function in &functions {
        assert!(
            named.iter().any(|q| q.split('(').next() == Some(function)),
            "docs/c-abi.md does not name `{function}`"
        );
    }
    // And names none the header lacks.
    for name in named.iter().filter_map(|q| q.split('(').next()) {
        if name.starts_with("presence_") && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            assert!(
                functions.iter().any(|f| f == name),
                "docs/c-abi.md names `{name}`, which the header lacks"
            );
        }
    }
}

// ----- the main example -----------------------------------------------------------------

/// The lobby's legend lists every engine call the example makes, so that a reader of its
/// output can find each call behind an event line.
#[test]
fn lobby_legend_names_every_engine_call() {
    let source = read("examples/lobby.rs");
    let legend_start = source.find("fn legend()").expect("fn legend");
    let legend_end = legend_start + source[legend_start..].find("\n}").expect("its end");
    let legend = &source[legend_start..legend_end];
    let code = format!("{}{}", &source[..legend_start], &source[legend_end..]);
    let mut calls: Vec<&str> = code
        .split("engine.")
        .skip(1)
        .filter_map(|rest| rest.split_once('(').map(|(name, _)| name))
        .filter(|name| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .collect();
    calls.extend(code.split("calling(\"").skip(1).filter_map(|rest| rest.split('"').next()));
    calls.sort();
    calls.dedup();
    assert!(calls.len() >= 10, "{calls:?}");
    for call in calls {
        let named = legend.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|word| word == call);
        assert!(named, "examples/lobby.rs calls `{call}` but its legend does not name it");
    }
}

// ----- nothing outside the repository ---------------------------------------------------

/// What a reference outside the repository looks like in `text`, if it has one: a file of
/// another tree, or a numbered or unnamed request in a tracker the repository does not hold.
fn outside_reference(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let patterns = [["spec", ".md"].concat(), ["../", "shared"].concat(), ["/", "work/"].concat()];
    if let Some(p) = patterns.iter().find(|p| lower.contains(p.as_str())) {
        return Some(p.clone());
    }
    let words: Vec<&str> = lower.split(|c: char| !(c.is_ascii_alphanumeric() || c == '#')).collect();
    for pair in words.windows(2) {
        let numbered = pair[1].trim_start_matches('#').starts_with(|c: char| c.is_ascii_digit());
        match pair {
            ["issue" | "section", _] if numbered => return Some(pair.join(" ")),
            ["the", "issue" | "spec"] => return Some(pair.join(" ")),
            _ => {}
        }
    }
    None
}

#[test]
fn nothing_refers_outside_the_repository() {
    for file in tracked(".") {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        if let Some(what) = outside_reference(&text) {
            panic!("{file} refers outside the repository: \"{what}\"");
        }
    }
}

// ----- the bindings ---------------------------------------------------------------------

/// The names a word list in `text` holds, as whole words.
fn names_word(text: &str, name: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| w == name)
}

/// The names of the public methods declared in C# `files`, overrides aside.
fn csharp_methods(files: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .flat_map(|f| read(f).lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("public ")?;
            let before_paren =
                rest.split('(').next().filter(|_| rest.contains('(') && !rest.contains(" override "))?;
            let words: Vec<&str> = before_paren.split_whitespace().collect();
            // `public Type Name(`: a method; `public Name(`: a constructor.
            (words.len() >= 2 && !rest.starts_with("override")).then(|| words[words.len() - 1].to_owned())
        })
        .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The public part of C++ `class name { public: ... private:` in presence.hpp.
fn cpp_public(hpp: &str, name: &str) -> String {
    let start = hpp.find(&format!("\nclass {name} {{")).unwrap_or_else(|| panic!("no class {name}"));
    let body = &hpp[start..];
    let end = [body.find("\nprivate:"), body.find("\n};")].into_iter().flatten().min().expect("its end");
    body[..end].to_owned()
}

/// Each binding's guide names every public method of its API (and the C++ guide every
/// field of `presence::Event`), so a method added to a binding is documented with it.
#[test]
fn binding_guides_name_every_public_method_and_event_field() {
    let csharp = read("bindings/csharp/README.md");
    let methods = csharp_methods(&[
        "bindings/csharp/Runtime/PresenceEngine.cs",
        "bindings/csharp/Runtime/PresenceConnection.cs",
    ]);
    assert!(methods.len() >= 30 && methods.contains(&"Pump".to_owned()), "{methods:?}");
    for method in methods {
        assert!(names_word(&csharp, &method), "bindings/csharp/README.md does not name {method}");
    }
    let runtime: Vec<String> = fs::read_dir("bindings/csharp/Runtime")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cs"))
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    let events: Vec<&str> = runtime
        .iter()
        .flat_map(|text| text.lines())
        .filter_map(|l| {
            l.trim().strip_prefix("public event ")?.trim_end_matches(';').split_whitespace().last()
        })
        .collect();
    assert!(events.len() >= 10 && events.contains(&"UserPresenceChanged"), "{events:?}");
    for event in events {
        assert!(names_word(&csharp, event), "bindings/csharp/README.md does not name the event {event}");
    }
    let models = read("bindings/csharp/Runtime/Models.cs");
    let class = &models[models.find("public sealed class PresenceEvent").expect("class PresenceEvent")..];
    let class = &class[..class.find("\n    }").expect("its end")];
    let properties: Vec<&str> = class
        .lines()
        .filter_map(|l| l.trim().strip_prefix("public ")?.split_once(" {").map(|(decl, _)| decl))
        .filter_map(|decl| decl.split_whitespace().last())
        .collect();
    assert!(properties.len() >= 12 && properties.contains(&"Reason"), "{properties:?}");
    for property in properties {
        assert!(
            csharp.contains(&format!("`{property}`")),
            "bindings/csharp/README.md does not name PresenceEvent.{property}"
        );
    }

    let hpp = read("bindings/cpp/presence.hpp");
    let cpp_readme = read("bindings/cpp/README.md");
    let engine = cpp_public(&hpp, "Engine");
    let mut methods: Vec<&str> = engine
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("[[nodiscard]]") || l.starts_with("Result<") || l.starts_with("static "))
        .filter_map(|l| l.split('(').next()?.split_whitespace().last())
        .map(|name| name.trim_start_matches(['*', '&']))
        .collect();
    methods.dedup();
    assert!(methods.len() >= 25 && methods.contains(&"poll"), "{methods:?}");
    for method in methods {
        assert!(names_word(&cpp_readme, method), "bindings/cpp/README.md does not name Engine::{method}");
    }
    let unreal = read("bindings/unreal/README.md");
    let subsystem = read("bindings/unreal/Presence/Source/Presence/Public/PresenceSubsystem.h");
    let lines: Vec<&str> = subsystem.lines().map(str::trim).collect();
    let exposed: Vec<&str> = lines
        .windows(2)
        .filter(|pair| {
            pair[0].starts_with("UFUNCTION(") || pair[0].starts_with("UPROPERTY(BlueprintAssignable")
        })
        .filter_map(|pair| pair[1].split(['(', ';']).next()?.split_whitespace().last())
        .collect();
    assert!(exposed.len() >= 15 && exposed.contains(&"OnConnectionClosed"), "{exposed:?}");
    for name in exposed {
        assert!(
            names_word(&unreal, name),
            "bindings/unreal/README.md does not name UPresenceSubsystem::{name}"
        );
    }

    let guide = read("docs/cpp.md");
    let event = cpp_public(&hpp, "Event");
    // Members are indented once; deeper lines are method bodies.
    let fields: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("    ").filter(|m| !m.starts_with([' ', '/'])))
        .filter(|l| !l.contains('(') && l.contains(';'))
        .filter_map(|l| l.split(';').next()?.split('=').next()?.split_whitespace().last())
        .collect();
    assert!(fields.len() >= 12 && fields.contains(&"user_id"), "{fields:?}");
    for field in fields {
        assert!(guide.contains(&format!("`{field}`")), "docs/cpp.md does not name presence::Event::{field}");
        assert!(
            cpp_readme.contains(&format!("`{field}`")),
            "bindings/cpp/README.md does not name Event::{field}"
        );
    }
}

// ----- presence-server ------------------------------------------------------------------

/// docs/server.md names every environment variable, route, client request and settings
/// key of presence-server, read from its source.
#[test]
fn server_guide_names_every_setting_route_and_request() {
    let guide = read("docs/server.md");
    let source = |file: &str| read(&format!("server/src/{file}"));
    let literals =
        |text: &str| -> Vec<String> { text.split('"').skip(1).step_by(2).map(String::from).collect() };

    let mut names: Vec<String> = ["main.rs", "config.rs"]
        .iter()
        .flat_map(|f| literals(&source(f)))
        .filter(|l| l.starts_with("PRESENCE_") && l.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .collect();
    let api = source("api.rs");
    names.extend(api.split(".route(\"").skip(1).filter_map(|r| r.split('"').next()).map(String::from));
    let socket = source("socket.rs");
    let answer = between(&socket, "fn answer(", "\n}");
    names.extend(
        answer
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"')?.split_once("\" =>").map(|(name, _)| name.to_owned())),
    );
    let config = source("config.rs");
    let settings = between(&config, "pub struct", "\n}");
    names.extend(
        settings
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub ")?.split_once(':').map(|(n, _)| n.to_owned())),
    );
    for expected in ["PRESENCE_NODE_ID", "/healthz", "unsubscribe_user", "ping_interval_ms"] {
        assert!(names.iter().any(|n| n == expected), "{expected} not found in the source: {names:?}");
    }
    for name in names {
        // Static files of the page are the page's business, not the protocol's.
        if name.ends_with(".js") || name.ends_with(".css") || name == "/" {
            continue;
        }
        assert!(guide.contains(&name), "docs/server.md does not name {name}");
    }
}

// ----- Rust examples in docs/ -----------------------------------------------------------

/// The doc comments of every file under `dir`, one text per file, `/// ` removed.
fn doc_comments(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            doc_comments(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = fs::read_to_string(&path).unwrap();
            let docs = text.lines().filter_map(|l| l.trim_start().strip_prefix("///"));
            out.push(docs.map(|l| l.strip_prefix(' ').unwrap_or(l)).collect::<Vec<_>>().join("\n"));
        }
    }
}

/// Every Rust block of docs/ is a documentation test of the library (so `cargo test`
/// compiles and runs it): its text appears in a doc comment under src/.
#[test]
fn rust_examples_in_docs_are_doc_tests() {
    let mut comments = Vec::new();
    doc_comments(Path::new("src"), &mut comments);
    let mut checked = 0;
    for file in fs::read_dir("docs").unwrap().flatten().map(|e| e.path()) {
        if file.extension().is_none_or(|x| x != "md") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for block in text.split("```rust\n").skip(1).filter_map(|b| b.split("\n```").next()) {
            assert!(
                comments.iter().any(|c| c.contains(block)),
                "{}: this Rust block is not a doc test under src/ (paste it into the rustdoc of what it shows):\n{block}",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no Rust block found in docs/");
}

/// The JSON examples of configurations and queries are accepted as shown.
#[test]
fn json_examples_in_docs_are_accepted() {
    let json_blocks = |path: &str| -> Vec<String> {
        read(path)
            .split("```json\n")
            .skip(1)
            .filter_map(|b| b.split("\n```").next())
            .map(String::from)
            .collect()
    };
    // A library built without the cluster feature refuses any `cluster` key.
    let configs: &[&str] =
        if cfg!(feature = "cluster") { &["docs/config.md", "docs/cluster.md"] } else { &["docs/config.md"] };
    for &path in configs {
        let blocks = json_blocks(path);
        assert!(!blocks.is_empty(), "{path} has no JSON example");
        for block in blocks {
            if let Err(e) = presence::Config::from_json(&block) {
                panic!("{path}: the configuration example is refused: {e}\n{block}");
            }
        }
    }
    let engine = Engine::from_json(None).unwrap();
    let query = json_blocks("docs/queries.md").into_iter().next().expect("a query example");
    if let Err(e) = engine.query_users(ConnectionId::HOST, &query) {
        panic!("docs/queries.md: the query example is refused: {e}\n{query}");
    }
}

// ----- the contract's event table -------------------------------------------------------

/// The JSON keys each event type carries beyond `type`, `created_at`, `seq` and
/// `connection_id`, read from the serializer of events in src/event.rs.
fn event_payload_keys() -> Vec<(String, Vec<String>)> {
    let source = read("src/event.rs");
    let names: Vec<(String, String)> = between(&source, "event_types! {", "\n}")
        .lines()
        .filter_map(|l| {
            let (variant, rest) = l.trim().split_once(" = ")?;
            Some((variant.to_owned(), rest.split('"').nth(1)?.to_owned()))
        })
        .collect();
    let with_channel: Vec<&str> = between(&source, "pub fn channel(", "_ => None")
        .split("EventKind::")
        .skip(1)
        .filter_map(|s| s.split([' ', '{']).next())
        .collect();
    let serializer = between(&source, "impl Serialize for EventView", "m.end()");
    let keys_in = |text: &str| -> Vec<String> {
        text.split("serialize_entry(\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(String::from)
            .collect()
    };
    let channel_keys = keys_in(between(serializer, "if let Some(ch)", "}"));
    let mut arms: Vec<(String, Vec<String>)> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for segment in serializer.split("EventKind::").skip(1) {
        let variant: String = segment.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        pending.push(variant);
        if let Some((_, body)) = segment.split_once("=>") {
            for variant in pending.drain(..) {
                let mut keys = keys_in(body);
                if with_channel.contains(&variant.as_str()) {
                    keys.extend(channel_keys.iter().cloned());
                }
                arms.push((variant, keys));
            }
        }
    }
    names
        .into_iter()
        .map(|(variant, name)| {
            let keys = arms.iter().find(|(v, _)| *v == variant).map(|(_, k)| k.clone());
            (name, keys.unwrap_or_else(|| panic!("the serializer has no arm for {variant}")))
        })
        .collect()
}

/// The contract's event table has a row per event type giving its payload (every key its
/// JSON carries), its `connection.closed` row every close reason, and its errors every
/// result code.
#[test]
fn contract_tables_every_event_close_reason_and_result_code() {
    let contract = read("docs/contract.md");
    let events = section(&contract, "Events");
    let closed =
        events.lines().find(|r| r.starts_with("| `connection.closed`")).expect("a connection.closed row");
    for reason in CloseReason::ALL {
        let name = reason.as_str();
        assert!(
            closed.contains(&format!("`{name}`")),
            "docs/contract.md's connection.closed row lacks {name}"
        );
    }
    let errors = section(&contract, "Errors");
    for name in std::iter::once("PRESENCE_OK").chain(ErrorKind::ALL.iter().map(|k| k.name())) {
        let short = name.trim_start_matches("PRESENCE_ERR_").trim_start_matches("PRESENCE_");
        assert!(errors.contains(&format!("`{short}`")), "docs/contract.md's errors lack `{short}` ({name})");
    }
    let payloads = event_payload_keys();
    assert!(payloads.len() >= 9, "{payloads:?}");
    for (name, keys) in payloads {
        assert!(!keys.is_empty(), "{name}: no keys read from the serializer");
        let row = events
            .lines()
            .find(|l| l.split('|').nth(1).is_some_and(|c| quoted(c).contains(&name.as_str())))
            .unwrap_or_else(|| panic!("docs/contract.md's event table has no row for {name}"));
        let payload = row.split('|').nth(3).unwrap_or("");
        for key in keys {
            assert!(
                payload.contains(&format!("`{key}`")),
                "docs/contract.md: {name}'s payload lacks `{key}`"
            );
        }
    }
}
