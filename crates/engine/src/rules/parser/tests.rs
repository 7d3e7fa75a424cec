use super::*;

fn check(field: &str, op: Op, rhs: Rhs) -> Expr {
    Expr::Check {
        field: field.into(),
        arg: None,
        op,
        rhs,
        at: 0,
    }
}

fn strip(e: Expr) -> Expr {
    match e {
        Expr::And(k) => Expr::And(k.into_iter().map(strip).collect()),
        Expr::Or(k) => Expr::Or(k.into_iter().map(strip).collect()),
        Expr::Not(k) => Expr::Not(Box::new(strip(*k))),
        Expr::Ident { name, .. } => Expr::Ident { name, at: 0 },
        Expr::Check {
            field,
            arg,
            op,
            rhs,
            ..
        } => Expr::Check {
            field,
            arg,
            op,
            rhs,
            at: 0,
        },
    }
}

fn p(s: &str) -> Expr {
    strip(parse(s, &[]).unwrap())
}

#[test]
fn precedence_not_and_or() {
    let e = p("a or b and not c");
    let want = Expr::Or(vec![
        Expr::Ident {
            name: "a".into(),
            at: 0,
        },
        Expr::And(vec![
            Expr::Ident {
                name: "b".into(),
                at: 0,
            },
            Expr::Not(Box::new(Expr::Ident {
                name: "c".into(),
                at: 0,
            })),
        ]),
    ]);
    assert_eq!(e, want);
    assert_eq!(
        p("not not a"),
        Expr::Ident {
            name: "a".into(),
            at: 0
        }
    );
    assert_eq!(
        p("not(a)"),
        Expr::Not(Box::new(Expr::Ident {
            name: "a".into(),
            at: 0
        }))
    );
    assert_eq!(
        p("notable"),
        Expr::Ident {
            name: "notable".into(),
            at: 0
        }
    );
    assert!(matches!(p("a and(b or c)"), Expr::And(k) if matches!(k[1], Expr::Or(_))));
    assert!(parse("a andb", &[]).is_err());
}

#[test]
fn operators_and_values() {
    assert_eq!(
        p("ka.verb=create"),
        check("ka.verb", Op::Eq, Rhs::Value("create".into()))
    );
    assert_eq!(
        p("ka.verb==create"),
        check("ka.verb", Op::Eq, Rhs::Value("create".into()))
    );
    assert_eq!(
        p("ka.target.name!=\"system:coredns\""),
        check(
            "ka.target.name",
            Op::Ne,
            Rhs::Value("system:coredns".into())
        )
    );
    assert_eq!(
        p("ka.user.name=system:anonymous"),
        check(
            "ka.user.name",
            Op::Eq,
            Rhs::Value("system:anonymous".into())
        )
    );
    assert_eq!(
        p("ka.response.code >= 400"),
        check("ka.response.code", Op::Ge, Rhs::Value("400".into()))
    );
    assert_eq!(
        p("a.b<=0x1F"),
        check("a.b", Op::Le, Rhs::Value("0x1F".into()))
    );
    assert_eq!(
        p("a.b > -1.5e+3"),
        check("a.b", Op::Gt, Rhs::Value("-1.5e+3".into()))
    );
    assert!(parse("a.b < abc", &[]).is_err());
    assert_eq!(p("a.b exists"), check("a.b", Op::Exists, Rhs::None));
    assert_eq!(
        p("a.b in (x, \"y z\", 'w')"),
        check(
            "a.b",
            Op::In,
            Rhs::List(vec!["x".into(), "y z".into(), "w".into()])
        )
    );
    assert_eq!(p("a.b in()"), check("a.b", Op::In, Rhs::List(vec![])));
    assert_eq!(
        p("a.b intersects (x)"),
        check("a.b", Op::Intersects, Rhs::List(vec!["x".into()]))
    );
    assert_eq!(
        p("a.b in foo"),
        check("a.b", Op::In, Rhs::List(vec!["foo".into()]))
    );
    assert_eq!(
        p("a.b pmatch (/x)"),
        check("a.b", Op::PMatch, Rhs::List(vec!["/x".into()]))
    );
    for (w, op) in [
        ("contains", Op::Contains),
        ("icontains", Op::IContains),
        ("bcontains", Op::BContains),
        ("startswith", Op::StartsWith),
        ("bstartswith", Op::BStartsWith),
        ("endswith", Op::EndsWith),
        ("glob", Op::Glob),
        ("iglob", Op::IGlob),
        ("regex", Op::Regex),
    ] {
        assert_eq!(
            p(&format!("a.b {w} x")),
            check("a.b", op, Rhs::Value("x".into())),
            "{w}"
        );
    }
    assert!(parse("a.b containsx", &[]).is_err());
    assert!(parse("a.b", &[]).is_err());
}

#[test]
fn field_arguments() {
    let e = p("jevt.value[/requestObject/spec/volumes] exists");
    assert!(
        matches!(e, Expr::Check { arg: Some(ref a), .. } if a == "/requestObject/spec/volumes")
    );
    let e = p("ka.uri.param[\"a b\"]=x");
    assert!(matches!(e, Expr::Check { arg: Some(ref a), .. } if a == "a b"));
    assert!(parse("ka.uri.param[a b]=x", &[]).is_err());
    assert!(parse("ka.uri.param[]=x", &[]).is_err());
}

#[test]
fn escapes() {
    let v = |s: &str| match p(&format!("a.b={s}")) {
        Expr::Check {
            rhs: Rhs::Value(v), ..
        } => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(v(r#""a\"b""#), "a\"b");
    assert_eq!(v(r#"'a\'b'"#), "a'b");
    assert_eq!(v(r#""\b\f\n\r\t\\\/""#), "\x08\x0c\n\r\t\\/");
    assert_eq!(v(r#""\x41\x42""#), "AB");
    assert_eq!(v(r#""a\ b""#), "a\\ b");
    assert!(parse(r#"a.b="a\'b""#, &[]).is_err());
    assert!(parse(r#"a.b='a\"b'"#, &[]).is_err());
    assert!(parse(r#"a.b="\q""#, &[]).is_err());
    assert!(parse(r#"a.b="\x4""#, &[]).is_err());
    assert!(parse(r#"a.b="abc"#, &[]).is_err());
}

#[test]
fn bare_fields_and_transformers() {
    assert_eq!(
        strip(parse("rule in (x)", &["rule"]).unwrap()),
        check("rule", Op::In, Rhs::List(vec!["x".into()]))
    );
    assert!(matches!(p("rule"), Expr::Ident { .. }));
    let e = parse("tolower(ka.verb)=x", &[]).unwrap_err();
    assert!(e.message.contains("transformer"), "{e}");
}

#[test]
fn errors_have_offsets_and_depth_is_capped() {
    let e = parse("ka.verb=x and (", &[]).unwrap_err();
    assert_eq!(e.at, 15);
    let e = parse("a b", &[]).unwrap_err();
    assert_eq!(e.at, 2);
    let ok = "(".repeat(200) + "a" + &")".repeat(200);
    assert!(parse(&ok, &[]).is_ok());
    let nots = "not (".repeat(MAX_DEPTH) + "a.b exists" + &")".repeat(MAX_DEPTH);
    assert!(parse(&nots, &[]).is_ok());
    let deep = "(".repeat(MAX_DEPTH + 5) + "a" + &")".repeat(MAX_DEPTH + 5);
    let e = parse(&deep, &[]).unwrap_err();
    assert!(e.message.contains("deeper"), "{e}");
}
