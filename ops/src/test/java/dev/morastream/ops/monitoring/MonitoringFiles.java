package dev.morastream.ops.monitoring;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.SortedSet;
import java.util.TreeSet;

/**
 * The monitoring files a user points Prometheus and Grafana at ({@code ops/monitoring/}), read for tests:
 * the dashboard, the alert rules, and every Prometheus metric name their PromQL expressions reference,
 * exactly as it appears in a scrape ({@code mora_train_step_seconds_bucket} stays as it is).
 */
public final class MonitoringFiles {
    /** Series that Prometheus makes itself, not the process: not expected in a scrape. */
    private static final Set<String> SYNTHETIC = Set.of("up");

    /** Binary operators, modifiers and number literals that read like identifiers. */
    private static final Set<String> KEYWORDS = Set.of(
            "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2");

    /** Keywords followed by a parenthesised list of label names. */
    private static final Set<String> LABEL_LIST_KEYWORDS = Set.of(
            "by", "without", "on", "ignoring", "group_left", "group_right");

    private MonitoringFiles() {}

    /** The repository root: the first directory from the working directory up that holds {@code ops/monitoring}. */
    public static Path root() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolve("ops/monitoring"))) {
                return p;
            }
        }
        throw new IllegalStateException("no ops/monitoring above " + Path.of("").toAbsolutePath());
    }

    public static Path dashboardFile() {
        return root().resolve("ops/monitoring/grafana-dashboard.json");
    }

    public static Path alertsFile() {
        return root().resolve("ops/monitoring/prometheus-alerts.yml");
    }

    public static Path prometheusConfigFile() {
        return root().resolve("ops/monitoring/prometheus.yml");
    }

    public static Path operationsDoc() {
        return root().resolve("docs/operations.md");
    }

    public static JsonNode dashboard() {
        try {
            return new ObjectMapper().readTree(dashboardFile().toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static JsonNode alerts() {
        return yaml(alertsFile());
    }

    public static JsonNode prometheusConfig() {
        return yaml(prometheusConfigFile());
    }

    static JsonNode yaml(Path file) {
        try {
            return new YAMLMapper().readTree(file.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Every panel of the dashboard, rows included, panels inside collapsed rows too. */
    public static List<JsonNode> panels() {
        List<JsonNode> out = new ArrayList<>();
        for (JsonNode p : dashboard().path("panels")) {
            out.add(p);
            for (JsonNode inner : p.path("panels")) {
                out.add(inner);
            }
        }
        return out;
    }

    /** Every alerting rule of every group. */
    public static List<JsonNode> alertRules() {
        List<JsonNode> out = new ArrayList<>();
        for (JsonNode g : alerts().path("groups")) {
            for (JsonNode r : g.path("rules")) {
                out.add(r);
            }
        }
        return out;
    }

    /** The PromQL of every dashboard target and every alert rule. */
    public static List<String> expressions() {
        List<String> out = new ArrayList<>();
        for (JsonNode p : panels()) {
            for (JsonNode t : p.path("targets")) {
                if (t.hasNonNull("expr")) {
                    out.add(t.get("expr").asText());
                }
            }
        }
        for (JsonNode r : alertRules()) {
            if (r.hasNonNull("expr")) {
                out.add(r.get("expr").asText());
            }
        }
        return out;
    }

    /**
     * Every metric name the dashboard's and the alert rules' expressions reference, as it appears in
     * a scrape of the process's /metrics ({@code up}, which Prometheus makes, left out).
     */
    public static Set<String> metricNames() {
        SortedSet<String> names = new TreeSet<>();
        for (String e : expressions()) {
            names.addAll(namesIn(e));
        }
        names.removeAll(SYNTHETIC);
        return Collections.unmodifiableSortedSet(names);
    }

    /**
     * The metric names in one PromQL expression: identifiers that are not functions or aggregations
     * (followed by {@code (}, or by {@code by (...)} / {@code without (...)}), not keywords, not label
     * names (inside {@code {...}} matchers or the lists of {@code by}, {@code without}, {@code on},
     * {@code ignoring}, {@code group_left}, {@code group_right}), not in string literals, ranges or
     * durations, not Grafana variables.
     */
    static Set<String> namesIn(String expr) {
        SortedSet<String> names = new TreeSet<>();
        int n = expr.length();
        int i = 0;
        while (i < n) {
            char c = expr.charAt(i);
            if (c == '"' || c == '\'' || c == '`') {
                i = skipString(expr, i);
            } else if (c == '#') {
                while (i < n && expr.charAt(i) != '\n') {
                    i++;
                }
            } else if (c == '{') {
                i = skipTo(expr, i, '}');
            } else if (c == '[') {
                i = skipTo(expr, i, ']');
            } else if (c == '$') {
                // Grafana variable: $name or ${name}
                i++;
                if (i < n && expr.charAt(i) == '{') {
                    i = skipTo(expr, i, '}');
                } else {
                    while (i < n && isIdentifierPart(expr.charAt(i))) {
                        i++;
                    }
                }
            } else if (Character.isDigit(c) || (c == '.' && i + 1 < n && Character.isDigit(expr.charAt(i + 1)))) {
                // a number or a duration (5m, 1h30m, 1e-3, 0x1f): letters and digits that follow belong to it
                while (i < n && (isIdentifierPart(expr.charAt(i)) || expr.charAt(i) == '.')) {
                    i++;
                }
            } else if (isIdentifierStart(c)) {
                int start = i;
                while (i < n && isIdentifierPart(expr.charAt(i))) {
                    i++;
                }
                String word = expr.substring(start, i);
                String lower = word.toLowerCase(Locale.ROOT);
                int next = skipSpace(expr, i);
                // a function or aggregation: f(...), or sum by (...) (...) / sum without (...) (...)
                boolean call = next < n && expr.charAt(next) == '(' || startsWithModifier(expr, next);
                if (LABEL_LIST_KEYWORDS.contains(lower)) {
                    if (call) {
                        i = skipTo(expr, next, ')');
                    }
                } else if (!call && !KEYWORDS.contains(lower)) {
                    names.add(word);
                }
            } else {
                i++;
            }
        }
        return names;
    }

    /** Whether {@code by} or {@code without} (then a parenthesised list) starts at {@code i}. */
    private static boolean startsWithModifier(String s, int i) {
        int end = i;
        while (end < s.length() && isIdentifierPart(s.charAt(end))) {
            end++;
        }
        String word = s.substring(i, end).toLowerCase(Locale.ROOT);
        int next = skipSpace(s, end);
        return (word.equals("by") || word.equals("without")) && next < s.length() && s.charAt(next) == '(';
    }

    private static boolean isIdentifierStart(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    }

    private static boolean isIdentifierPart(char c) {
        return isIdentifierStart(c) || (c >= '0' && c <= '9');
    }

    private static int skipSpace(String s, int i) {
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
            i++;
        }
        return i;
    }

    /** From an opening quote to just after its closing quote (backslash escapes in " and '). */
    private static int skipString(String s, int i) {
        char quote = s.charAt(i);
        i++;
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == '\\' && quote != '`') {
                i += 2;
            } else if (c == quote) {
                return i + 1;
            } else {
                i++;
            }
        }
        throw new IllegalArgumentException("unterminated string in: " + s);
    }

    /** From an opening bracket to just after the matching {@code close}, strings and nesting honoured. */
    private static int skipTo(String s, int i, char close) {
        char open = s.charAt(i);
        int depth = 0;
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == '"' || c == '\'' || c == '`') {
                i = skipString(s, i);
                continue;
            }
            if (c == open) {
                depth++;
            } else if (c == close && --depth == 0) {
                return i + 1;
            }
            i++;
        }
        throw new IllegalArgumentException("no '" + close + "' to close '" + open + "' in: " + s);
    }
}
