//! A C program generated from the installed header that calls every exported function of
//! libcpupolicy with hostile arguments, three ways: every pointer NULL and every number 0; every
//! handle a freed one (with huge counts and out-of-range enumeration values); every handle a live
//! one of the wrong type. No call may succeed (but `_free(NULL)` and a size query), none may
//! report an internal error, and the program must finish cleanly plain, under valgrind and with
//! AddressSanitizer. Generated from the header, it follows the API as it grows.

use std::fmt::Write as _;

/// Handle types: their C name stem.
const HANDLES: &[&str] = &["featureset", "policy", "host", "pool", "check", "xen", "topology"];

/// One parameter's C type, classified.
#[derive(Debug, PartialEq)]
enum Param {
    /// `[const] cpupolicy_KIND *`.
    Handle { kind: String, constant: bool },
    /// `cpupolicy_KIND **`.
    OutHandle(String),
    /// `const char *`.
    Text,
    /// `size_t`.
    Size,
    /// `bool`.
    Bool,
    /// Any other pointer (buffers, arrays, out-values), with its C type.
    Pointer(String),
    /// Any integer or enumeration typedef, with its C type.
    Integer(String),
}

/// An exported function: its name, whether it returns a status, its parameters.
#[derive(Debug)]
pub struct Function {
    name: String,
    returns_status: bool,
    params: Vec<Param>,
}

/// The exported functions of the header.
pub fn functions(header: &str) -> Result<Vec<Function>, String> {
    let flat: String = header.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    for declaration in flat.split(';') {
        let declaration = declaration.split("*/").last().unwrap_or(declaration).trim();
        let returns_status = declaration.starts_with("cpupolicy_status cpupolicy_");
        if !(returns_status || declaration.starts_with("const char *cpupolicy_")) {
            continue;
        }
        let (head, rest) = declaration.split_once('(').ok_or_else(|| format!("no '(' in {declaration}"))?;
        let name = head.rsplit([' ', '*']).next().unwrap_or("").to_string();
        let params = rest.trim_end_matches(')').split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "void");
        let params =
            params.map(|p| classify(&p.split_whitespace().collect::<Vec<_>>().join(" "))).collect::<Result<_, _>>()?;
        out.push(Function { name, returns_status, params });
    }
    if out.len() < 50 {
        return Err(format!("only {} functions found in the header", out.len()));
    }
    Ok(out)
}

/// Classifies `TYPE NAME` (the name dropped).
fn classify(param: &str) -> Result<Param, String> {
    let (ty, name) = param.rsplit_once(' ').ok_or_else(|| format!("parameter '{param}'"))?;
    // `T *name` and `T **name`: the stars belong to the type; `char err[128]` is a pointer.
    let stars = name.len() - name.trim_start_matches('*').len() + usize::from(name.ends_with(']'));
    let ty = format!("{}{}{}", ty.trim(), if stars > 0 { " " } else { "" }, "*".repeat(stars));
    let ty = ty.replace("* *", "**");
    let bare = ty.trim_start_matches("const ").trim_end_matches('*').trim();
    if let Some(kind) = bare.strip_prefix("cpupolicy_").filter(|k| HANDLES.contains(k)) {
        if ty.ends_with("**") && !ty.contains("const *") {
            return Ok(Param::OutHandle(kind.to_string()));
        }
        if ty.ends_with('*') && ty.matches('*').count() == 1 {
            return Ok(Param::Handle { kind: kind.to_string(), constant: ty.starts_with("const") });
        }
    }
    Ok(match ty.as_str() {
        "const char *" => Param::Text,
        "size_t" => Param::Size,
        "bool" => Param::Bool,
        t if t.ends_with('*') => Param::Pointer(t.to_string()),
        t => Param::Integer(t.to_string()),
    })
}

/// The three ways each function is called.
#[derive(Clone, Copy)]
enum Scenario {
    Nulls,
    Freed,
    WrongType,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Nulls => "NULL pointers and zeros",
            Scenario::Freed => "a freed handle, huge counts, out-of-range values",
            Scenario::WrongType => "a live handle of the wrong type, huge counts",
        }
    }

    fn argument(self, param: &Param) -> String {
        match (self, param) {
            (Scenario::Nulls, Param::Handle { .. } | Param::OutHandle(_) | Param::Text | Param::Pointer(_)) => {
                "NULL".into()
            }
            (Scenario::Nulls, Param::Size) => "0".into(),
            (Scenario::Nulls, Param::Bool) => "false".into(),
            (Scenario::Nulls, Param::Integer(t)) => format!("({t})0"),
            (_, Param::Handle { kind, constant }) => {
                let source = match self {
                    Scenario::Freed => "freed",
                    _ if kind == "featureset" => "live_policy",
                    _ => "live_featureset",
                };
                format!("({}cpupolicy_{kind} *){source}", if *constant { "const " } else { "" })
            }
            (_, Param::OutHandle(_) | Param::Pointer(_)) => "NULL".into(),
            (_, Param::Text) => "\"x\"".into(),
            (_, Param::Size) => "SIZE_MAX".into(),
            (_, Param::Bool) => "true".into(),
            (_, Param::Integer(t)) => format!("({t})-1"),
        }
    }
}

/// The C program.
pub fn program(functions: &[Function]) -> String {
    let mut c = String::from(
        "/* Generated by cargo xtask (every_function.rs) from cpupolicy.h: do not edit. */\n\
         #include <stdbool.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n#include <cpupolicy.h>\n\n\
         static int failures, calls;\n\
         static void judge(const char *function, const char *scenario, cpupolicy_status s, bool may_succeed) {\n\
         \x20   calls++;\n\
         \x20   if (s == CPUPOLICY_INTERNAL_ERROR || (s == CPUPOLICY_OK && !may_succeed)) {\n\
         \x20       char message[512] = \"\";\n\
         \x20       cpupolicy_last_error(message, sizeof(message), NULL);\n\
         \x20       fprintf(stderr, \"every_function: %s with %s: status %d (%s)\\n\", function, scenario, (int)s, message);\n\
         \x20       failures++;\n\
         \x20   }\n\
         }\n\n\
         int main(void) {\n\
         \x20   cpupolicy_featureset *live_featureset = NULL, *freed = NULL;\n\
         \x20   cpupolicy_policy *live_policy = NULL;\n\
         \x20   if (cpupolicy_featureset_new(&live_featureset) || cpupolicy_policy_new(&live_policy) ||\n\
         \x20       cpupolicy_featureset_new(&freed) || cpupolicy_featureset_free(freed)) {\n\
         \x20       fprintf(stderr, \"every_function: cannot make the handles\\n\");\n\
         \x20       return 1;\n\
         \x20   }\n",
    );
    for scenario in [Scenario::Nulls, Scenario::Freed, Scenario::WrongType] {
        for f in functions {
            let args: Vec<String> = f.params.iter().map(|p| scenario.argument(p)).collect();
            let call = format!("{}({})", f.name, args.join(", "));
            if !f.returns_status {
                // strerror/version: any number, never NULL.
                let _ = writeln!(
                    c,
                    "    if ({call} == NULL) judge(\"{}\", \"{}\", CPUPOLICY_INTERNAL_ERROR, false);",
                    f.name,
                    scenario.name()
                );
                continue;
            }
            let has_handle = f.params.iter().any(|p| matches!(p, Param::Handle { .. }));
            // What may succeed: freeing NULL, a size query of the last error; everything else has
            // a required argument that is NULL, freed, of the wrong type or out of range.
            let may_succeed =
                matches!(scenario, Scenario::Nulls) && (f.name.ends_with("_free") || f.name == "cpupolicy_last_error");
            // A bad handle must be named as such (or a NULL argument checked before it).
            let handle_check = if has_handle && !matches!(scenario, Scenario::Nulls) {
                " if (s != CPUPOLICY_WRONG_HANDLE && s != CPUPOLICY_INVALID_ARGUMENT) judge(name, scenario, CPUPOLICY_INTERNAL_ERROR, false);"
            } else {
                ""
            };
            let _ = writeln!(
                c,
                "    {{ const char *name = \"{}\", *scenario = \"{}\"; cpupolicy_status s = {call}; judge(name, scenario, s, {may_succeed});{handle_check} }}",
                f.name,
                scenario.name()
            );
        }
    }
    c.push_str(
        "    cpupolicy_featureset_free(live_featureset);\n\
         \x20   cpupolicy_policy_free(live_policy);\n\
         \x20   if (failures) {\n\
         \x20       fprintf(stderr, \"every_function: %d of %d calls misbehaved\\n\", failures, calls);\n\
         \x20       return 1;\n\
         \x20   }\n\
         \x20   printf(\"every_function: %d calls of every exported function with hostile arguments behaved\\n\", calls);\n\
         \x20   return 0;\n}\n",
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_classified() {
        assert_eq!(
            classify("const cpupolicy_policy *policy").unwrap(),
            Param::Handle { kind: "policy".into(), constant: true }
        );
        assert_eq!(classify("cpupolicy_policy **out").unwrap(), Param::OutHandle("policy".into()));
        assert_eq!(
            classify("const cpupolicy_host *const *hosts").unwrap(),
            Param::Pointer("const cpupolicy_host *const *".into())
        );
        assert_eq!(classify("size_t capacity").unwrap(), Param::Size);
        assert_eq!(classify("cpupolicy_guest_kind kind").unwrap(), Param::Integer("cpupolicy_guest_kind".into()));
        assert_eq!(classify("char err[128]").unwrap(), Param::Pointer("char *".into()));
    }
}
