//! Tests of database URLs and replica names: what parses, what is refused in our words, and
//! that no password ever shows.

use super::*;

const PASSWORD: &str = "hunter2-Sekret";

fn postgres(text: &str) -> PostgresUrl {
    match StoreUrl::parse(text) {
        Ok(StoreUrl::Postgres(url)) => url,
        other => panic!("{text}: {other:?}"),
    }
}

fn refused(text: &str) -> String {
    let error = StoreUrl::parse(text).expect_err(text);
    assert!(!error.contains(PASSWORD), "the error for {text} shows the password: {error}");
    error
}

#[test]
fn sqlite_urls_name_a_file() {
    for (text, path) in [
        ("sqlite:/var/lib/oneoff/oneoff.db", "/var/lib/oneoff/oneoff.db"),
        ("sqlite:///var/lib/oneoff/oneoff.db", "/var/lib/oneoff/oneoff.db"),
        ("sqlite://data/oneoff.db", "data/oneoff.db"),
        ("sqlite:oneoff.db", "oneoff.db"),
        ("  SQLite:oneoff.db ", "oneoff.db"),
    ] {
        assert_eq!(StoreUrl::parse(text), Ok(StoreUrl::Sqlite(PathBuf::from(path))), "{text}");
    }
    assert_eq!(StoreUrl::Sqlite("/d/oneoff.db".into()).to_string(), "sqlite:/d/oneoff.db");
}

#[test]
fn sqlite_urls_without_a_file_are_refused() {
    assert!(refused("sqlite:").contains("needs the database file's path"));
    assert!(refused("sqlite://").contains("needs the database file's path"));
    assert!(refused("sqlite::memory:").contains("in-memory"));
    assert!(refused("sqlite:oneoff.db?mode=rwc").contains("takes no parameters"));
    assert!(refused("sqlite:a\0b").contains("NUL"));
}

#[test]
fn postgres_urls_are_kept_exactly_as_written() {
    for text in [
        "postgres://oneoff@db/oneoff",
        "postgresql://oneoff@db.internal:5433/oneoff?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem",
        "postgres://oneoff@[::1]:5432/oneoff",
        "postgres:///oneoff?host=/run/postgresql",
        "postgres://oneoff@db/?dbname=oneoff",
        "postgres://oneoff@db/oneoff?options[statement_timeout]=5s&application_name=oneoff",
    ] {
        assert_eq!(postgres(text).connect_text_with_password(), text);
    }
    let url = postgres("postgres://oneoff@db/oneoff?sslmode=require");
    assert_eq!(url.redacted(), "postgres://oneoff@db/oneoff?sslmode=require", "nothing to hide, nothing changed");
}

#[test]
fn a_password_never_shows_in_display_debug_or_redacted() {
    let written = [
        format!("postgres://oneoff:{PASSWORD}@db/oneoff"),
        format!("postgres://:{PASSWORD}@db:5432/oneoff?sslmode=require"),
        format!("postgresql://oneoff@db/oneoff?password={PASSWORD}&sslmode=require"),
        format!("postgres://oneoff:{PASSWORD}@db/oneoff?password={PASSWORD}"),
        // An `@` left unescaped in the password: the last `@` ends it.
        format!("postgres://oneoff:{PASSWORD}@x@db/oneoff"),
    ];
    for text in &written {
        let store = StoreUrl::parse(text).expect(text);
        let StoreUrl::Postgres(url) = &store else { panic!("{store:?}") };
        assert_eq!(url.connect_text_with_password(), text, "the driver gets it all");
        for shown in [store.to_string(), format!("{store:?}"), store.redacted(), url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains(PASSWORD), "{shown}");
            assert!(shown.contains("***"), "the reader sees that a password is set: {shown}");
        }
    }
    assert_eq!(
        StoreUrl::parse(&format!("postgres://oneoff:{PASSWORD}@db/oneoff")).unwrap().to_string(),
        "postgres://oneoff:***@db/oneoff"
    );
}

#[test]
fn other_databases_get_our_words() {
    let error = refused(&format!("mysql://oneoff:{PASSWORD}@db/oneoff"));
    assert_eq!(
        error,
        "`mysql:` is not a database oneoff can use: the database URL must start with postgres:// \
         (PostgreSQL) or sqlite: (a SQLite file); without `database`, oneoff uses SQLite in data_dir"
    );
    // Without a scheme the text before `:` may be a user name: it is not quoted back.
    let error = refused(&format!("oneoff:{PASSWORD}@db/oneoff"));
    assert!(error.starts_with("`oneoff:` is not a database"), "{error}");
    let error = refused(&format!("oneoff@db:{PASSWORD}/x"));
    assert!(error.starts_with("the database URL must start with"), "{error}");
    assert!(refused("").starts_with("the database URL must start with"));
    assert!(refused("/var/lib/oneoff/oneoff.db").starts_with("the database URL must start with"));
}

#[test]
fn postgres_urls_need_a_host_and_a_database() {
    assert!(refused(&format!("postgres://oneoff:{PASSWORD}@db")).contains("names no database"));
    assert!(refused(&format!("postgres://oneoff:{PASSWORD}@db/")).contains("names no database"));
    assert!(refused("postgres://db/?dbname=").contains("names no database"));
    assert!(refused("postgres:///oneoff").contains("has no host"));
    let error = refused(&format!("postgres://oneoff:{PASSWORD}@/oneoff"));
    assert!(error.contains("empty host") || error.contains("has no host"), "{error}");
    assert!(refused("postgres://db/one/off").contains("only the database name"));
}

#[test]
fn broken_postgres_urls_do_not_show_the_password() {
    // A password with an unescaped `/`, `#` or `:`, and other broken shapes: the URL parser
    // sees a port or a fragment where the password is.
    for text in [
        format!("postgres://oneoff:{PASSWORD}/x@db/oneoff"),
        format!("postgres://oneoff:12#{PASSWORD}@db/oneoff"),
        format!("postgres://oneoff@db:{PASSWORD}/oneoff"),
        format!("postgres://oneoff@db/oneoff#{PASSWORD}"),
        format!("postgres://oneoff@db/oneoff?{PASSWORD}"),
        format!("postgres://oneoff@db/oneoff?sslmode=require&{PASSWORD}=x"),
        format!("postgres://oneoff@db/oneoff?port={PASSWORD}"),
        format!("postgres://oneoff:{PASSWORD}@[::1/oneoff"),
    ] {
        refused(&text);
    }
    assert!(refused(&format!("postgres://oneoff@db/oneoff?{PASSWORD}")).contains("a parameter that"));
}

#[test]
fn unknown_parameters_and_ssl_modes_are_refused_with_a_suggestion() {
    let error = refused("postgres://oneoff@db/oneoff?sslmod=require");
    assert!(
        error.contains("parameter `sslmod` that oneoff's driver does not know: did you mean `sslmode`?"),
        "{error}"
    );
    let error = refused("postgres://oneoff@db/oneoff?connect_timeout=10");
    assert!(error.contains("`connect_timeout`") && error.contains("it knows sslmode"), "{error}");
    let error = refused("postgres://oneoff@db/oneoff?sslmode=requir");
    assert!(error.contains("sslmode `requir` is not one of") && error.contains("did you mean `require`?"), "{error}");
    postgres("postgres://oneoff@db/oneoff?sslmode=REQUIRE");
    assert!(refused("postgres://oneoff@db/oneoff?hostaddr=db").contains("not an IP address"));
    assert!(refused("postgres://oneoff@db/oneoff?statement-cache-capacity=many").contains("not a number"));
    postgres("postgres:///oneoff?hostaddr=10.0.0.5&port=5433&statement-cache-capacity=0");
    let error = refused("postgres://oneoff@db/oneoff?sslmode=true");
    assert!(error.contains("did you mean `require`?"), "{error}");
}

#[test]
fn replica_names_are_short_plain_words() {
    for good in ["a", "oneoff-7d9f8-x2x", "Node_1.eu", &"x".repeat(63)] {
        assert_eq!(ReplicaName::parse(good).map(|name| name.to_string()), Ok(good.to_string()));
    }
    for bad in ["", "-a", ".a", "_a", "a b", "a/b", "é", "a\nb", &"x".repeat(64)] {
        let error = ReplicaName::parse(bad).expect_err(bad);
        assert!(error.contains("1 to 63 characters"), "{bad:?}: {error}");
        assert!(!error.contains('\n'), "{error}");
    }
    assert!(ReplicaName::parse("").unwrap_err().contains("leave it out to use the hostname"));
}

#[test]
fn any_hostname_becomes_a_valid_replica_name() {
    for (hostname, expected) in [
        ("web-1", "web-1"),
        ("web-1.eu.example.com", "web-1.eu.example.com"),
        ("  web 1\n", "web-1"),
        ("-.-web", "web"),
        ("héte", "h-te"),
        ("", "oneoff"),
        ("---", "oneoff"),
        ("\u{FFFD}\u{FFFD}", "oneoff"),
    ] {
        assert_eq!(default_replica_name(hostname).as_str(), expected, "{hostname:?}");
    }
    let long = format!("_{}", "a".repeat(100));
    assert_eq!(default_replica_name(&long).as_str(), "a".repeat(63));
    // Whatever the input, the result is what `parse` accepts.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..2000 {
        let text: String = (0..(state % 90) as usize)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                char::from_u32((state >> 33) as u32 % 0x3000).unwrap_or('?')
            })
            .collect();
        let name = default_replica_name(&text);
        assert_eq!(ReplicaName::parse(name.as_str()).as_ref(), Ok(&name), "{text:?}");
    }
}

#[test]
fn the_root_certificate_is_the_last_of_its_spellings() {
    let url = postgres;
    assert_eq!(url("postgres://db/oneoff").root_certificate(), None);
    assert_eq!(
        url("postgres://db/oneoff?sslmode=require&sslrootcert=/etc/ca%20one.pem").root_certificate(),
        Some(PathBuf::from("/etc/ca one.pem"))
    );
    assert_eq!(
        url("postgres://db/oneoff?ssl-ca=/a.pem&ssl-root-cert=/b.pem").root_certificate(),
        Some(PathBuf::from("/b.pem"))
    );
}
