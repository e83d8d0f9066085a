package dev.morastream.actors.registry;

import dev.morastream.actors.CborSerializable;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An immutable adapter version {@code domain@vN}. A name is never reused, even after the version
 * is deleted by retention.
 *
 * @param domain the domain the adapter was trained on
 * @param number N, starting at 1
 */
public record AdapterVersion(String domain, long number) implements Comparable<AdapterVersion>, CborSerializable {
    private static final Pattern NAME = Pattern.compile("([A-Za-z0-9][A-Za-z0-9_.-]*)@v([0-9]+)");
    private static final Pattern DOMAIN = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_.-]*");

    public AdapterVersion {
        checkDomain(domain);
        if (number < 1) {
            throw new IllegalArgumentException("version numbers start at 1, got " + number);
        }
    }

    /** Parses {@code domain@vN}. */
    public static AdapterVersion parse(String s) {
        Matcher m = NAME.matcher(s.trim());
        if (!m.matches()) {
            throw new IllegalArgumentException("not an adapter version (domain@vN): '" + s + "'");
        }
        return new AdapterVersion(m.group(1), Long.parseLong(m.group(2)));
    }

    /** Throws when {@code domain} is not a safe directory and topic-friendly name. */
    public static String checkDomain(String domain) {
        if (domain == null || !DOMAIN.matcher(domain).matches() || domain.length() > 100) {
            throw new IllegalArgumentException("bad domain name '" + domain + "' (letters, digits, '.', '_', '-')");
        }
        return domain;
    }

    @Override
    public String toString() {
        return domain + "@v" + number;
    }

    @Override
    public int compareTo(AdapterVersion o) {
        int c = domain.compareTo(o.domain);
        return c != 0 ? c : Long.compare(number, o.number);
    }
}
