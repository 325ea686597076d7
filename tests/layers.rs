//! The import rule of `src/lib.rs`'s module map, checked over the source (no services): every
//! `crate::` path (and `super::` inside a folder) is an edge from the file that names it to the
//! module it names. A top-level module may only use modules listed before it in the map, and no
//! two files may import each other, directly or around a cycle. Unit-test modules are exempt
//! (they may reach anything), as are mentions inside `#[cfg(test)] mod tests { .. }`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The module order of the map in `src/lib.rs` (the ```text block after the `layers` marker).
fn layer_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut lines = lib.lines().skip_while(|l| !l.contains("<!-- layers:"));
    lines.next().expect("lib.rs has the layers marker");
    assert_eq!(lines.next().map(str::trim), Some("//! ```text"));
    lines
        .map(|l| l.trim_start_matches("//!").trim())
        .take_while(|l| *l != "```")
        .flat_map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every `.rs` file under `src/` by module path (`a/b.rs` and `a/b/mod.rs` are `a::b`).
fn files() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&src(), &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src()).unwrap().with_extension("");
            let mut m: Module = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if m.last().is_some_and(|l| l == "mod") {
                m.pop();
            }
            if m == ["lib"] || m == ["main"] {
                m.clear();
            }
            (m, p)
        })
        .collect()
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else {
        return vec![path.to_owned()];
    };
    let (prefix, rest) = (&path[..open], &path[open + 1..path.len() - 1]);
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for ch in rest.chars() {
        match ch {
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            '{' => {
                depth += 1;
                cur.push(ch)
            }
            '}' => {
                depth -= 1;
                cur.push(ch)
            }
            _ => cur.push(ch),
        }
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// The paths after each `crate::` of `text` (braces balanced, white space dropped).
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let (mut path, mut depth) = (String::new(), 0);
        for ch in rest.chars() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                c if c.is_alphanumeric() || c == '_' || c == ':' => {}
                ',' | ' ' | '\n' if depth > 0 => {}
                _ => break,
            }
            if !ch.is_whitespace() {
                path.push(ch);
            }
            if depth == 0 && ch == '}' {
                break;
            }
        }
        out.extend(expand(path.trim_end_matches(':')));
    }
    out
}

fn resolve(files: &BTreeMap<Module, PathBuf>, path: &[String]) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| files.contains_key(m))
}

/// Edges between files: (from, to) → where the import is.
fn edges(files: &BTreeMap<Module, PathBuf>) -> BTreeMap<(Module, Module), String> {
    let mut out = BTreeMap::new();
    for (module, path) in files {
        if module.last().is_some_and(|l| l == "tests") {
            continue; // a unit-test module may use anything
        }
        let mut text = std::fs::read_to_string(path).unwrap();
        if let Some(at) = text.find("#[cfg(test)]\nmod tests {") {
            text.truncate(at);
        }
        let parent: Module = module[..module.len().saturating_sub(1)].to_vec();
        let mut named: Vec<Module> = crate_paths(&text)
            .iter()
            .map(|p| p.split("::").map(str::to_owned).collect())
            .collect();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("super::") {
            rest = &rest[at + "super::".len()..];
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let mut m = parent.clone();
            m.push(word);
            named.push(m);
        }
        for target in named.iter().filter_map(|p| resolve(files, p)) {
            if target != *module && !module.starts_with(&target) {
                out.entry((module.clone(), target))
                    .or_insert_with(|| path.display().to_string());
            }
        }
    }
    out
}

#[test]
fn imports_only_point_down_the_module_map() {
    let order = layer_order();
    let files = files();
    let top: BTreeSet<&String> = files.keys().filter_map(|m| m.first()).collect();
    let unlisted: Vec<&&String> = top.iter().filter(|m| !order.contains(m)).collect();
    assert!(
        unlisted.is_empty(),
        "top-level modules missing from the module map in src/lib.rs: {unlisted:?}"
    );
    let rank = |m: &Module| order.iter().position(|o| *o == m[0]).unwrap();
    let upward: Vec<String> = edges(&files)
        .into_iter()
        .filter(|((a, b), _)| !a.is_empty() && a[0] != b[0] && rank(b) >= rank(a))
        .map(|((a, b), at)| format!("{} -> {} ({at})", a.join("::"), b.join("::")))
        .collect();
    assert!(
        upward.is_empty(),
        "imports that point up the module map of src/lib.rs (move the piece down, or the map):\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other() {
    let files = files();
    let edges = edges(&files);
    let mut adj: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        adj.entry(a).or_default().push(b);
    }
    // Depth-first search; a back edge closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'a>(
        m: &'a Module,
        adj: &BTreeMap<&'a Module, Vec<&'a Module>>,
        marks: &mut BTreeMap<&'a Module, Mark>,
        stack: &mut Vec<&'a Module>,
    ) -> Option<Vec<String>> {
        marks.insert(m, Mark::Open);
        stack.push(m);
        for &n in adj.get(m).into_iter().flatten() {
            match marks.get(n) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|s| *s == n).unwrap();
                    return Some(stack[from..].iter().map(|s| s.join("::")).collect());
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(n, adj, marks, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(m, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in files.keys() {
        if !marks.contains_key(m) {
            if let Some(cycle) = visit(m, &adj, &mut marks, &mut Vec::new()) {
                panic!("import cycle: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_layer_check_sees_a_back_edge() {
    // The parser itself: grouped and nested imports expand, and an upward one is an edge.
    assert_eq!(
        crate_paths("use crate::{app::run, mapping::{key, oid}};\nlet x = crate::setup::x();"),
        ["app::run", "mapping::key", "mapping::oid", "setup::x"]
    );
    let files = files();
    let pretend: Vec<String> = crate_paths("use crate::app::run;");
    let target = resolve(
        &files,
        &pretend[0]
            .split("::")
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    assert_eq!(target, Some(vec!["app".to_owned()]));
    let order = layer_order();
    let rank = |m: &str| order.iter().position(|o| o == m).unwrap();
    assert!(
        rank("app") > rank("mapping"),
        "mapping -> app would be upward"
    );
}
