//! Architecture test: imports run one way. Reads every `crate::…`, `self::…` and `super::…`
//! path in `gateway/src`, `control/src` and `table/src` and fails on an import cycle between
//! top-level modules, or between the files (sibling modules) inside any one folder, printing
//! the cycle. No exceptions list: a cycle is fixed by moving code, not by allowing it here.
//!
//! Test code (`tests.rs`, `*_tests.rs` and inline `mod tests { … }`) is left out: it is not
//! part of the program's dependency graph, and a test may read whatever it checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from the crate root, e.g. `["auth", "jwks"]`.
type ModPath = Vec<String>;

/// The module tree of one crate: every module path and the file that defines it.
struct Crate {
    modules: BTreeSet<ModPath>,
    /// Module path → source file, for modules with a file of their own.
    files: Vec<(ModPath, PathBuf)>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

fn is_test_file(path: &Path) -> bool {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    name == "tests" || name.ends_with("_tests")
}

/// Walk `src/` and name each `.rs` file's module: `a/b.rs` and `a/b/mod.rs` are `a::b`;
/// `lib.rs` and `main.rs` are the root.
fn load(src: &Path) -> Crate {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") || is_test_file(&path) {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let last = parts.pop().expect("a file name");
            let stem = last.trim_end_matches(".rs").to_string();
            let root_file = parts.is_empty() && (stem == "lib" || stem == "main");
            if !root_file && stem != "mod" {
                parts.push(stem);
            }
            files.push((parts, path));
        }
    }
    let mut modules: BTreeSet<ModPath> = BTreeSet::new();
    for (m, _) in &files {
        for i in 0..=m.len() {
            modules.insert(m[..i].to_vec());
        }
    }
    Crate { modules, files }
}

/// The source with comments, string and char literals blanked, so that only code is read.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // A raw string r"…" or r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&c| c == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                let close = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map(|p| i + 2 + p)
                } else if b.get(i + 2) == Some(&b'\'') {
                    Some(i + 2)
                } else {
                    None
                };
                match close {
                    Some(end) => {
                        out.push_str("' '");
                        i = end + 1;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The module paths (from the crate root) that `code`, the body of module `here`, names.
/// Inline `mod name { … }` blocks shift `self`/`super`; inline `mod tests` is skipped.
fn references(code: &str, here: &ModPath) -> Vec<ModPath> {
    let b = code.as_bytes();
    let mut refs = Vec::new();
    // Stack of (module path, brace depth at which its block closes).
    let mut scope: Vec<(ModPath, usize)> = vec![(here.clone(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == b'}' {
            if scope.len() > 1 && scope.last().map(|s| s.1) == Some(depth) {
                scope.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        if !is_ident(c) || (i > 0 && is_ident(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let word = &code[start..i];
        let current = scope.last().expect("the file's own scope").0.clone();
        if word == "mod" {
            // `mod name {` opens an inline module; `mod name;` declares a file module.
            let rest = code[i..].trim_start();
            let name: String = rest
                .bytes()
                .take_while(|&c| is_ident(c))
                .map(char::from)
                .collect();
            let after = rest[name.len()..].trim_start();
            if !name.is_empty() && after.starts_with('{') {
                let open = code.len() - after.len();
                if name == "tests" {
                    // Skip the whole test module.
                    i = matching_brace(b, open) + 1;
                    continue;
                }
                let mut inner = current.clone();
                inner.push(name);
                scope.push((inner, depth + 1));
                i = open;
            }
            continue;
        }
        let base = match word {
            "crate" => Vec::new(),
            "self" => current.clone(),
            "super" => {
                let mut p = current.clone();
                p.pop();
                p
            }
            _ => continue,
        };
        // Only a path (`word::…`) counts.
        if !code[i..].starts_with("::") {
            continue;
        }
        let (paths, end) = path_tail(code, i + 2, base);
        refs.extend(paths);
        i = end;
    }
    refs
}

fn matching_brace(b: &[u8], open: usize) -> usize {
    let mut depth = 0;
    for (j, &c) in b.iter().enumerate().skip(open) {
        if c == b'{' {
            depth += 1;
        } else if c == b'}' {
            depth -= 1;
            if depth == 0 {
                return j;
            }
        }
    }
    b.len()
}

/// Read the rest of a path after `prefix::`, following `super::`, and `{a, b::c}` groups.
/// Returns the paths named and where reading stopped.
fn path_tail(code: &str, mut i: usize, mut prefix: ModPath) -> (Vec<ModPath>, usize) {
    let b = code.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            let close = matching_brace(b, i);
            let mut out = Vec::new();
            let inner = &code[i + 1..close.min(code.len())];
            for part in split_top_level(inner) {
                let part = part.trim();
                if part.is_empty() || part == "self" {
                    out.push(prefix.clone());
                    continue;
                }
                let (mut p, _) = path_tail(&format!("{part} "), 0, prefix.clone());
                out.append(&mut p);
            }
            return (out, close + 1);
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if start == i {
            return (vec![prefix], i);
        }
        let seg = &code[start..i];
        if seg == "super" {
            prefix.pop();
        } else if seg != "self" {
            prefix.push(seg.to_string());
        }
        if code[i..].starts_with("::") {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (j, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..j]);
                start = j + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The longest known module that `path` starts with (an item path names its module).
fn module_of(krate: &Crate, path: &ModPath) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| krate.modules.contains(p))
        .unwrap_or_default()
}

/// Every edge `from → to` between modules, where `from` is the module of a file and `to` the
/// module a path in it names.
fn edges(krate: &Crate) -> BTreeSet<(ModPath, ModPath)> {
    let mut out = BTreeSet::new();
    for (module, file) in &krate.files {
        let src =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for r in references(&code_only(&src), module) {
            let target = module_of(krate, &r);
            if &target != module {
                out.insert((module.clone(), target));
            }
        }
    }
    out
}

/// The graphs to keep acyclic: the top-level modules, and the children of every folder.
/// An edge between two modules counts in the graph of their nearest common parent, between
/// the two children of that parent that contain them.
fn graphs(krate: &Crate) -> BTreeMap<ModPath, BTreeSet<(String, String)>> {
    let mut out: BTreeMap<ModPath, BTreeSet<(String, String)>> = BTreeMap::new();
    for (from, to) in edges(krate) {
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        // A module naming its own ancestor or descendant is not an edge between siblings.
        if common == from.len() || common == to.len() {
            continue;
        }
        out.entry(from[..common].to_vec())
            .or_default()
            .insert((from[common].clone(), to[common].clone()));
    }
    out
}

/// One cycle in the graph, if there is any, as the list of nodes around it.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        adj.entry(a).or_default().push(b);
    }
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a str,
        adj: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for &m in adj.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|&s| s == m).expect("on the stack");
                    let mut cycle: Vec<String> =
                        stack[at..].iter().map(|s| s.to_string()).collect();
                    cycle.push(m.to_string());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, adj, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let nodes: Vec<&str> = adj.keys().copied().collect();
    for n in nodes {
        if state.get(n).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, &adj, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// The modules that import each other, directly or not, with `start` (its strongly
/// connected component): everything that has to move apart to open the loop.
fn tangle(edges: &BTreeSet<(String, String)>, start: &str) -> Vec<String> {
    let reach = |from: &str, rev: bool| {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for (a, b) in edges {
                let (x, y) = if rev { (b, a) } else { (a, b) };
                if *x == n && seen.insert(y.clone()) {
                    todo.push(y.clone());
                }
            }
        }
        seen
    };
    let fwd = reach(start, false);
    reach(start, true).intersection(&fwd).cloned().collect()
}

/// Every cycle found, one per graph, as printable lines.
fn cycles(src: &Path) -> Vec<String> {
    let krate = load(src);
    let mut out = Vec::new();
    for (parent, graph) in graphs(&krate) {
        if let Some(cycle) = find_cycle(&graph) {
            let within = if parent.is_empty() {
                "top-level modules".to_string()
            } else {
                format!("inside {}", parent.join("::"))
            };
            let witnesses: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} → {}", w[0], w[1]))
                .collect();
            out.push(format!(
                "{}: {within}: {}  ({}); all in the loop: {}",
                src.display(),
                cycle.join(" → "),
                witnesses.join(", "),
                tangle(&graph, &cycle[0]).join(" ↔ ")
            ));
        }
    }
    out
}

#[test]
fn imports_have_no_cycles() {
    let root = workspace();
    let mut found = Vec::new();
    for krate in ["table", "gateway", "control", "apps/todos", "apps/sdk"] {
        found.extend(cycles(&root.join(krate).join("src")));
    }
    assert!(
        found.is_empty(),
        "import cycles (move the shared piece down, or pass the slice a step needs):\n{}",
        found.join("\n")
    );
}

/// The reader itself: a cycle written into a scratch crate is found and printed; `super::`,
/// grouped imports, inline modules, comments and strings are read as Rust reads them.
#[test]
fn finds_a_planted_cycle() {
    let dir = std::env::temp_dir().join(format!("realmgate-arch-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("auth")).expect("scratch dir");
    let write = |p: &str, s: &str| std::fs::write(src.join(p), s).expect("write");
    write(
        "lib.rs",
        "pub mod auth;\npub mod route;\npub mod snapshot;\n",
    );
    write(
        "route.rs",
        "//! uses crate::snapshot only in this comment\npub struct Policy;\n",
    );
    write(
        "auth/mod.rs",
        "pub mod jwt;\npub mod realm;\nuse crate::{route::Policy, snapshot::{self}};\n",
    );
    write(
        "auth/jwt.rs",
        "use super::realm::Realm;\nconst S: &str = \"crate::route\";\n",
    );
    write(
        "auth/realm.rs",
        "pub struct Realm;\nmod tests { use super::super::jwt; }\n",
    );
    write("snapshot.rs", "pub fn f(_: crate::auth::jwt::X) {}\n");
    let found = cycles(&src);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("top-level modules"), "{found:?}");
    assert!(found[0].contains("auth → snapshot → auth"), "{found:?}");
    // A sibling loop inside a folder.
    write(
        "auth/realm.rs",
        "pub struct Realm;\nfn g() { super::jwt::h() }\n",
    );
    let found = cycles(&src);
    assert!(
        found
            .iter()
            .any(|c| c.contains("inside auth") && c.contains("jwt → realm → jwt")),
        "{found:?}"
    );
    // Remove the loops: nothing found.
    write("auth/realm.rs", "pub struct Realm;\n");
    write("snapshot.rs", "pub fn f() {}\n");
    assert!(cycles(&src).is_empty(), "{:?}", cycles(&src));
    std::fs::remove_dir_all(&dir).ok();
}
