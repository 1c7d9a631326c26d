//! The layers of docs/ARCHITECTURE.md, held true: every file under src/ is read (with syn, so
//! nothing is missed in a macro, an attribute or a multi-line `use`), every reference it makes
//! to another part of the crate is resolved to the file that defines it, and the test fails on
//! an import from a lower layer to a higher one, on `service::sys` importing anything but the
//! vocabulary, and on a cycle among files — printing each, with file and line.
//!
//! What counts as a reference: `use crate::…`/`super::…`/`self::…` trees, paths written inline
//! (`crate::a::b::f()`, `super::X`, `child::f()`), and such paths inside macro calls and
//! attributes. Re-exports are followed to the file that defines the item. A module's
//! references to its own child modules — declaring them, re-exporting from them — are its
//! structure, not a dependency; everything else counts. Method calls are not paths, so a
//! method defined in a file of a higher layer is out of this test's sight; the layers'
//! doc comments say where behaviour lives.

use proc_macro2::{TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// The layers, bottom up: a file may import from its own rank or below.
const LAYERS: [&str; 5] = ["model", "logic", "service", "app", "cli"];

type ModPath = Vec<String>;

/// One source file and the module it is.
struct Source {
    /// Relative to the crate root, `src/…`.
    path: PathBuf,
    module: ModPath,
    ast: syn::File,
}

/// What a module defines and re-exports, from all of its files (a module with one file per
/// OS has two).
#[derive(Default)]
struct Scope {
    files: BTreeSet<usize>,
    /// Item name → the files that define it.
    items: BTreeMap<String, BTreeSet<usize>>,
    /// Names brought in by `use` (public or not): name → the path it stands for (absolute).
    uses: BTreeMap<String, ModPath>,
    /// `use x::*` globs: absolute module paths.
    globs: Vec<ModPath>,
    /// Child modules.
    children: BTreeSet<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Loads `path` as `module`, then every file module it declares.
fn load(path: PathBuf, module: ModPath, mod_rs: bool, out: &mut Vec<Source>) {
    let ast = parse(&path);
    let dir = path.parent().unwrap().to_path_buf();
    let own = path.file_stem().unwrap().to_string_lossy().into_owned();
    let mut declared = Vec::new();
    collect_mods(&ast.items, &module, &mut Vec::new(), &mut declared);
    out.push(Source {
        path,
        module: module.clone(),
        ast,
    });
    for (inline, name, attr, child) in declared {
        let file = match attr {
            Some(p) => dir.join(p),
            None => {
                let mut base = if mod_rs { dir.clone() } else { dir.join(&own) };
                for i in &inline {
                    base.push(i);
                }
                let flat = base.join(format!("{name}.rs"));
                if root().join(&flat).exists() {
                    flat
                } else {
                    base.join(&name).join("mod.rs")
                }
            }
        };
        // A file loaded through `#[path]` owns its folder like a mod.rs.
        load(file, child, true, out);
    }
}

type Declared = Vec<(Vec<String>, String, Option<String>, ModPath)>;

fn collect_mods(
    items: &[syn::Item],
    module: &ModPath,
    inline: &mut Vec<String>,
    out: &mut Declared,
) {
    for item in items {
        if let syn::Item::Mod(m) = item {
            let mut child = module.clone();
            child.extend(inline.iter().cloned());
            child.push(m.ident.to_string());
            match &m.content {
                None => out.push((
                    inline.clone(),
                    m.ident.to_string(),
                    path_attr(&m.attrs),
                    child,
                )),
                Some((_, inner)) => {
                    inline.push(m.ident.to_string());
                    collect_mods(inner, module, inline, out);
                    inline.pop();
                }
            }
        }
    }
}

fn item_name(item: &syn::Item) -> Option<String> {
    Some(
        match item {
            syn::Item::Const(i) => &i.ident,
            syn::Item::Enum(i) => &i.ident,
            syn::Item::Fn(i) => &i.sig.ident,
            syn::Item::Macro(i) => i.ident.as_ref()?,
            syn::Item::Static(i) => &i.ident,
            syn::Item::Struct(i) => &i.ident,
            syn::Item::Trait(i) => &i.ident,
            syn::Item::Type(i) => &i.ident,
            syn::Item::Union(i) => &i.ident,
            _ => return None,
        }
        .to_string(),
    )
}

/// Flattens a use tree into (name it binds, absolute path) pairs; a glob binds `*`.
fn use_leaves(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                out.push((prefix.last().cloned().unwrap_or_default(), prefix.clone()));
            } else {
                let mut p = prefix.clone();
                p.push(name.clone());
                out.push((name, p));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut p = prefix.clone();
            if r.ident != "self" {
                p.push(r.ident.to_string());
            }
            out.push((r.rename.to_string(), p));
        }
        syn::UseTree::Glob(_) => out.push(("*".into(), prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_leaves(t, prefix, out);
            }
        }
    }
}

/// Makes a written path absolute, seen from `scope` (`crate`, `super`, `self`, or a child
/// module of the scope); `None` for a path into another crate, std, or a local name.
fn absolute(
    written: &[String],
    scope: &ModPath,
    scopes: &BTreeMap<ModPath, Scope>,
) -> Option<ModPath> {
    let first = written.first()?;
    let mut at = match first.as_str() {
        "crate" => Vec::new(),
        "self" => scope.clone(),
        "super" => {
            let mut s = scope.clone();
            s.pop();
            s
        }
        name if scopes.get(scope).is_some_and(|s| s.children.contains(name)) => {
            let mut s = scope.clone();
            s.push(name.to_string());
            s
        }
        // A name a `use` of this scope brought in: what it stands for.
        name => scopes.get(scope)?.uses.get(name)?.clone(),
    };
    let mut rest = &written[1..];
    while rest.first().is_some_and(|s| s == "super") {
        at.pop();
        rest = &rest[1..];
    }
    at.extend(rest.iter().cloned());
    Some(at)
}

/// The files a path (absolute, `crate` left out) lands in: the module it names, or the file
/// that defines the item it names, following re-exports.
fn resolve(path: &[String], scopes: &BTreeMap<ModPath, Scope>, depth: usize) -> BTreeSet<usize> {
    let mut module: ModPath = Vec::new();
    for (i, seg) in path.iter().enumerate() {
        let Some(scope) = scopes.get(&module) else {
            return BTreeSet::new();
        };
        if scope.children.contains(seg) {
            module.push(seg.clone());
            continue;
        }
        if let Some(files) = scope.items.get(seg) {
            return files.clone();
        }
        if depth < 16 {
            if let Some(target) = scope.uses.get(seg) {
                let mut p = target.clone();
                p.extend(path[i + 1..].iter().cloned());
                let found = resolve(&p, scopes, depth + 1);
                if !found.is_empty() {
                    return found;
                }
            }
            for g in &scope.globs {
                let mut p = g.clone();
                p.extend(path[i..].iter().cloned());
                let found = resolve(&p, scopes, depth + 1);
                if !found.is_empty() && scopes.get(g).is_some_and(|s| found != s.files) {
                    return found;
                }
            }
        }
        // A name only known to the compiler (a variant, a method, a field): the module's.
        return scope.files.clone();
    }
    scopes
        .get(&module)
        .map(|s| s.files.clone())
        .unwrap_or_default()
}

/// One reference from a file: where it is written, what it names, and whether it is the
/// file's own structure (a re-export of a child).
struct Reference {
    line: usize,
    text: String,
    target: ModPath,
    reexport: bool,
    /// A `use` that names a whole module: an upward import all the same, but for the file
    /// graph only the items reached through it count (a module of several files would
    /// otherwise be a dependency on all of them).
    module: bool,
}

struct Refs<'a> {
    scopes: &'a BTreeMap<ModPath, Scope>,
    module: ModPath,
    inline: Vec<String>,
    out: Vec<Reference>,
}

impl Refs<'_> {
    fn scope(&self) -> ModPath {
        let mut s = self.module.clone();
        s.extend(self.inline.iter().cloned());
        s
    }

    fn add(&mut self, written: Vec<String>, line: usize, reexport: bool) {
        self.add_ref(written, line, reexport, false);
    }

    fn add_ref(&mut self, written: Vec<String>, line: usize, reexport: bool, module: bool) {
        let scope = self.scope();
        if let Some(target) = absolute(&written, &scope, self.scopes) {
            // Own structure: re-exporting from a child (or deeper).
            let reexport = reexport && target.starts_with(&scope) && target.len() > scope.len();
            self.out.push(Reference {
                line,
                text: written.join("::"),
                target,
                reexport,
                module,
            });
        }
    }

    /// Paths written inside macro calls and attributes: `crate :: a :: b`, `super :: x`.
    fn tokens(&mut self, tokens: TokenStream) {
        let list: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < list.len() {
            if let TokenTree::Group(g) = &list[i] {
                self.tokens(g.stream());
                i += 1;
                continue;
            }
            let TokenTree::Ident(id) = &list[i] else {
                i += 1;
                continue;
            };
            let starts =
                i == 0 || !matches!(&list[i - 1], TokenTree::Punct(p) if p.as_char() == ':');
            let head = id.to_string();
            if !starts {
                i += 1;
                continue;
            }
            let line = id.span().start().line;
            let mut written = vec![head];
            let mut j = i + 1;
            while j + 2 < list.len() {
                match (&list[j], &list[j + 1], &list[j + 2]) {
                    (TokenTree::Punct(a), TokenTree::Punct(b), TokenTree::Ident(n))
                        if a.as_char() == ':' && b.as_char() == ':' =>
                    {
                        written.push(n.to_string());
                        j += 3;
                    }
                    _ => break,
                }
            }
            if written.len() > 1 {
                self.add(written, line, false);
            }
            i = j.max(i + 1);
        }
    }
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if let Some((_, items)) = &m.content {
            self.inline.push(m.ident.to_string());
            for a in &m.attrs {
                self.visit_attribute(a);
            }
            for i in items {
                self.visit_item(i);
            }
            self.inline.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        let mut leaves = Vec::new();
        use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
        let line = u.use_token.span.start().line;
        for (name, path) in leaves {
            let scope = self.scope();
            let names_module =
                absolute(&path, &scope, self.scopes).is_some_and(|p| self.scopes.contains_key(&p));
            let module = names_module && name != "*" && !public;
            self.add_ref(path, line, public, module);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let written: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if written.len() > 1 {
            let line = p.segments[0].ident.span().start().line;
            self.add(written, line, false);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }

    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        if !a.path().is_ident("doc") {
            if let syn::Meta::List(l) = &a.meta {
                self.tokens(l.tokens.clone());
            }
        }
    }
}

fn in_sys(module: &ModPath) -> bool {
    module.len() >= 2 && module[0] == "service" && module[1] == "sys"
}

fn rank(module: &ModPath) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| module.first().is_some_and(|m| m == l))
}

/// Every file, its module, and the scopes of all modules.
fn crate_map() -> (Vec<Source>, BTreeMap<ModPath, Scope>) {
    let mut sources = Vec::new();
    load(PathBuf::from("src/lib.rs"), Vec::new(), true, &mut sources);
    let mut scopes: BTreeMap<ModPath, Scope> = BTreeMap::new();
    for (i, s) in sources.iter().enumerate() {
        fill(&mut scopes, i, &s.module, &s.ast.items);
    }
    (sources, scopes)
}

fn fill(scopes: &mut BTreeMap<ModPath, Scope>, file: usize, module: &ModPath, items: &[syn::Item]) {
    scopes.entry(module.clone()).or_default().files.insert(file);
    let children: BTreeSet<String> = items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Mod(m) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect();
    for item in items {
        match item {
            syn::Item::Mod(m) => {
                scopes
                    .entry(module.clone())
                    .or_default()
                    .children
                    .insert(m.ident.to_string());
                if let Some((_, inner)) = &m.content {
                    let mut child = module.clone();
                    child.push(m.ident.to_string());
                    fill(scopes, file, &child, inner);
                }
            }
            syn::Item::Use(u) => {
                let mut leaves = Vec::new();
                use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
                for (name, path) in leaves {
                    // Relative to the module; a path into another crate stays as written and
                    // resolves to nothing.
                    let abs = match path.first().map(String::as_str) {
                        Some("crate") => path[1..].to_vec(),
                        Some("self") | Some("super") => {
                            let mut m = module.clone();
                            let mut rest = &path[..];
                            if rest[0] == "self" {
                                rest = &rest[1..];
                            }
                            while rest.first().is_some_and(|s| s == "super") {
                                m.pop();
                                rest = &rest[1..];
                            }
                            m.extend(rest.iter().cloned());
                            m
                        }
                        Some(child) if children.contains(child) => {
                            let mut m = module.clone();
                            m.extend(path.iter().cloned());
                            m
                        }
                        // Another crate (std, serde, …).
                        _ => continue,
                    };
                    let scope = scopes.entry(module.clone()).or_default();
                    if name == "*" {
                        scope.globs.push(abs);
                    } else {
                        scope.uses.insert(name, abs);
                    }
                }
            }
            other => {
                if let Some(name) = item_name(other) {
                    scopes
                        .entry(module.clone())
                        .or_default()
                        .items
                        .entry(name)
                        .or_default()
                        .insert(file);
                }
            }
        }
    }
}

/// An edge of the file graph, with where it is written.
struct Edge {
    from: usize,
    to: usize,
    line: usize,
    text: String,
    /// The module path as written (made absolute): a path through a higher layer is an
    /// upward import even where a re-export lands it lower.
    written: ModPath,
    /// Names a whole module (see [`Reference::module`]): not an edge of the file graph.
    module: bool,
}

fn edges(sources: &[Source], scopes: &BTreeMap<ModPath, Scope>) -> Vec<Edge> {
    let mut out = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let mut refs = Refs {
            scopes,
            module: s.module.clone(),
            inline: Vec::new(),
            out: Vec::new(),
        };
        refs.visit_file(&s.ast);
        for r in refs.out {
            if r.reexport {
                continue;
            }
            for to in resolve(&r.target, scopes, 0) {
                // Itself, or the other OS's file of the same module.
                if to == i || sources[to].module == s.module {
                    continue;
                }
                out.push(Edge {
                    from: i,
                    to,
                    line: r.line,
                    text: r.text.clone(),
                    written: r.target.clone(),
                    module: r.module,
                });
            }
        }
    }
    out
}

fn show(s: &Source) -> String {
    s.path.display().to_string()
}

#[test]
fn every_file_is_in_a_layer_and_lib_rs_only_lists_them() {
    let (sources, _) = crate_map();
    let mut wrong = Vec::new();
    for s in &sources {
        if s.module.is_empty() {
            for item in &s.ast.items {
                if !matches!(item, syn::Item::Mod(_)) {
                    wrong.push(format!(
                        "{}: holds more than the module list (move it into its layer)",
                        show(s)
                    ));
                }
            }
        } else if rank(&s.module).is_none() {
            wrong.push(format!(
                "{}: is in no layer ({})",
                show(s),
                LAYERS.join(", ")
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}\n", wrong.join("\n"));
}

#[test]
fn no_file_imports_from_a_layer_above_its_own() {
    let (sources, scopes) = crate_map();
    let mut wrong = BTreeSet::new();
    for e in edges(&sources, &scopes) {
        let (from, to) = (&sources[e.from], &sources[e.to]);
        let (Some(rf), Some(rt)) = (rank(&from.module), rank(&to.module)) else {
            continue;
        };
        let rt = rt.max(rank(&e.written).unwrap_or(0));
        let sys = in_sys(&from.module);
        // Both where it lands and the path written (a path through sys that lands in the
        // model, as `super::UserInfo`, is sys's own re-export).
        let sys_or_model = |m: &ModPath| in_sys(m) || rank(m) == Some(0);
        if rt > rf {
            wrong.insert(format!(
                "{}:{}: {} imports {} ({}, in {})",
                show(from),
                e.line,
                LAYERS[rf],
                LAYERS[rt],
                e.text,
                show(to)
            ));
        } else if sys && !(sys_or_model(&to.module) && sys_or_model(&e.written)) {
            wrong.insert(format!(
                "{}:{}: service::sys imports only the model, not {} ({})",
                show(from),
                e.line,
                show(to),
                e.text
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "\nupward imports:\n{}\n",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_cycle_among_files() {
    let (sources, scopes) = crate_map();
    let all = edges(&sources, &scopes);
    let mut next: Vec<BTreeMap<usize, (usize, String)>> = vec![BTreeMap::new(); sources.len()];
    for e in all.iter().filter(|e| !e.module) {
        next[e.from].entry(e.to).or_insert((e.line, e.text.clone()));
    }
    let mut cycles = Vec::new();
    for comp in strongly_connected(&next) {
        if comp.len() < 2 {
            continue;
        }
        // One cycle through the component, edge by edge, so the message says what to cut.
        let inside: BTreeSet<usize> = comp.iter().copied().collect();
        let start = comp[0];
        let mut path = vec![start];
        let mut seen = BTreeSet::from([start]);
        let mut at = start;
        loop {
            let (&to, _) = next[at]
                .iter()
                .find(|(t, _)| inside.contains(t) && (!seen.contains(*t) || **t == start))
                .or_else(|| next[at].iter().find(|(t, _)| inside.contains(t)))
                .unwrap();
            path.push(to);
            if to == start || !seen.insert(to) {
                break;
            }
            at = to;
        }
        let mut text = format!("cycle of {} files:", comp.len());
        for w in path.windows(2) {
            let (line, what) = &next[w[0]][&w[1]];
            text.push_str(&format!(
                "\n  {}:{line} -> {} ({what})",
                show(&sources[w[0]]),
                show(&sources[w[1]])
            ));
        }
        cycles.push(text);
    }
    assert!(cycles.is_empty(), "\n{}\n", cycles.join("\n"));
}

/// Tarjan's strongly connected components.
fn strongly_connected(next: &[BTreeMap<usize, (usize, String)>]) -> Vec<Vec<usize>> {
    struct T<'a> {
        next: &'a [BTreeMap<usize, (usize, String)>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on: Vec<bool>,
        n: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.n);
        t.low[v] = t.n;
        t.n += 1;
        t.stack.push(v);
        t.on[v] = true;
        let targets: Vec<usize> = t.next[v].keys().copied().collect();
        for w in targets {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(i) if t.on[w] => t.low[v] = t.low[v].min(i),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            t.out.push(comp);
        }
    }
    let n = next.len();
    let mut t = T {
        next,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on: vec![false; n],
        n: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}
