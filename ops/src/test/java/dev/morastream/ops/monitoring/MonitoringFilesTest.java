package dev.morastream.ops.monitoring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.morastream.ops.metrics.Metrics;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** The dashboard, alert rules and Prometheus config in ops/monitoring are complete and use only documented metrics. */
class MonitoringFilesTest {

    @Test
    void dashboardHasDatasourceAndDomainVariables() {
        JsonNode d = MonitoringFiles.dashboard();
        assertTrue(d.path("schemaVersion").asInt() >= 39, "schemaVersion " + d.path("schemaVersion"));
        assertFalse(d.path("title").asText().isBlank(), "dashboard title");
        JsonNode ds = null;
        JsonNode domain = null;
        for (JsonNode v : d.path("templating").path("list")) {
            if (v.path("name").asText().equals("DS_PROMETHEUS")) {
                ds = v;
            } else if (v.path("name").asText().equals("domain")) {
                domain = v;
            }
        }
        assertTrue(ds != null, "template variable DS_PROMETHEUS");
        assertEquals("datasource", ds.path("type").asText());
        assertEquals("prometheus", ds.path("query").asText());
        assertTrue(domain != null, "template variable domain");
        assertEquals("query", domain.path("type").asText());
        assertEquals("label_values(mora_train_steps_total, domain)", domain.path("definition").asText());
        assertEquals("label_values(mora_train_steps_total, domain)", domain.path("query").path("query").asText());
        assertEquals("${DS_PROMETHEUS}", domain.path("datasource").path("uid").asText());
    }

    @Test
    void everyPanelIsComplete() {
        List<JsonNode> panels = MonitoringFiles.panels();
        Set<Integer> ids = new HashSet<>();
        int graphs = 0;
        for (JsonNode p : panels) {
            String title = p.path("title").asText();
            assertFalse(title.isBlank(), "a panel without a title: " + p);
            assertTrue(p.path("id").isInt(), title + ": id");
            assertTrue(ids.add(p.path("id").asInt()), title + ": duplicate panel id " + p.path("id"));
            if (p.path("type").asText().equals("row")) {
                continue;
            }
            graphs++;
            assertFalse(p.path("description").asText().isBlank(), title + ": description");
            assertFalse(p.path("fieldConfig").path("defaults").path("unit").asText().isBlank(), title + ": unit");
            assertEquals("prometheus", p.path("datasource").path("type").asText(), title + ": datasource type");
            assertEquals("${DS_PROMETHEUS}", p.path("datasource").path("uid").asText(), title + ": datasource");
            int exprs = 0;
            for (JsonNode t : p.path("targets")) {
                assertEquals("${DS_PROMETHEUS}", t.path("datasource").path("uid").asText(), title + ": target datasource");
                if (!t.path("expr").asText().isBlank()) {
                    exprs++;
                }
            }
            assertTrue(exprs > 0, title + ": no target with an expr");
        }
        assertTrue(graphs >= 25, "only " + graphs + " panels");
    }

    @Test
    void dashboardHasEveryRow() {
        Set<String> rows = new TreeSet<>();
        for (JsonNode p : MonitoringFiles.panels()) {
            if (p.path("type").asText().equals("row")) {
                rows.add(p.path("title").asText());
            }
        }
        assertEquals(new TreeSet<>(List.of("Stream", "Training", "Evaluation & promotion", "Serving", "JVM / process")), rows);
    }

    @Test
    void everyAlertRuleIsComplete() {
        List<JsonNode> rules = MonitoringFiles.alertRules();
        assertTrue(rules.size() >= 8, "only " + rules.size() + " rules");
        Set<String> names = new HashSet<>();
        for (JsonNode r : rules) {
            String alert = r.path("alert").asText();
            assertFalse(alert.isBlank(), "a rule without alert: " + r);
            assertTrue(names.add(alert), "duplicate alert " + alert);
            assertFalse(r.path("expr").asText().isBlank(), alert + ": expr");
            assertTrue(r.path("for").asText().matches("\\d+[smhd]"), alert + ": for '" + r.path("for").asText() + "'");
            assertTrue(Set.of("critical", "warning", "info").contains(r.path("labels").path("severity").asText()),
                    alert + ": severity '" + r.path("labels").path("severity").asText() + "'");
            assertFalse(r.path("annotations").path("summary").asText().isBlank(), alert + ": summary");
            assertFalse(r.path("annotations").path("description").asText().isBlank(), alert + ": description");
        }
    }

    @Test
    void everyAlertIsExplainedInTheOperationsDoc() throws IOException {
        String doc = Files.readString(MonitoringFiles.operationsDoc());
        for (JsonNode r : MonitoringFiles.alertRules()) {
            String alert = r.path("alert").asText();
            assertTrue(doc.contains("### " + alert + " ("), alert + " has no section in docs/operations.md");
        }
    }

    @Test
    void prometheusConfigScrapesTheProcessAndLoadsTheRules() {
        JsonNode c = MonitoringFiles.prometheusConfig();
        JsonNode job = null;
        for (JsonNode j : c.path("scrape_configs")) {
            if (j.path("job_name").asText().equals("morastream")) {
                job = j;
            }
        }
        assertTrue(job != null, "scrape job morastream");
        assertEquals("/metrics", job.path("metrics_path").asText());
        List<String> targets = new ArrayList<>();
        for (JsonNode sc : job.path("static_configs")) {
            sc.path("targets").forEach(t -> targets.add(t.asText()));
        }
        assertEquals(List.of("localhost:8080"), targets);
        List<String> ruleFiles = new ArrayList<>();
        c.path("rule_files").forEach(f -> ruleFiles.add(f.asText()));
        assertEquals(1, ruleFiles.size(), "rule_files " + ruleFiles);
        // Prometheus resolves rule_files relative to the configuration file's directory
        Path rules = MonitoringFiles.prometheusConfigFile().getParent().resolve(ruleFiles.get(0)).normalize();
        assertEquals(MonitoringFiles.alertsFile().normalize(), rules);
        // the "up == 0" rule must watch this job
        assertTrue(MonitoringFiles.alertRules().stream()
                .anyMatch(r -> r.path("expr").asText().replace(" ", "").contains("up{job=\"morastream\"}==0")), "a rule on up == 0");
    }

    @Test
    void metricNamesAreExactScrapeNames() {
        Set<String> names = MonitoringFiles.metricNames();
        assertFalse(names.isEmpty());
        for (String n : List.of("mora_stream_consumer_lag_records", "mora_train_step_seconds_bucket", "mora_train_loss",
                "mora_train_failures_total", "mora_serving_request_latency_seconds_bucket", "mora_eval_score",
                "mora_promotion_last_timestamp_seconds", "jvm_gc_pause_seconds_sum", "process_uptime_seconds", "process_files_open_files")) {
            assertTrue(names.contains(n), n + " missing from " + names);
        }
        for (String n : List.of("up", "domain", "topic", "le", "by", "sum", "rate", "histogram_quantile", "time", "Inf",
                "and", "on", "m", "s", "h", "rate_interval", "__rate_interval")) {
            assertFalse(names.contains(n), n + " is not a metric: " + names);
        }
        for (String n : names) {
            assertTrue(n.matches("(mora|jvm|process|system)_[a-z0-9_]+"), "unexpected name " + n);
        }
    }

    @Test
    void jvmAndProcessNamesAreInARealScrape() {
        // the JVM and process meters come from Micrometer's binders, bound by Metrics; their names are
        // Micrometer's (process_files_open_files, not the Prometheus Java client's process_open_fds).
        // jvm_gc_pause_* appear only after a first collection, which this test cannot wait for.
        Set<String> scraped = new TreeSet<>();
        try (Metrics metrics = new Metrics()) {
            for (String line : metrics.scrape().split("\n")) {
                if (!line.startsWith("#") && !line.isBlank()) {
                    scraped.add(line.split("[{ ]", 2)[0]);
                }
            }
        }
        Set<String> missing = new TreeSet<>();
        for (String n : MonitoringFiles.metricNames()) {
            if (!n.startsWith("mora_") && !n.startsWith("jvm_gc_pause_") && !scraped.contains(n)) {
                missing.add(n);
            }
        }
        assertTrue(missing.isEmpty(), "not in a scrape of Metrics: " + missing + "; scraped " + scraped);
    }

    @Test
    void everyReferencedMetricIsDocumented() throws IOException {
        Set<String> documented = documentedMetrics();
        Set<String> missing = new TreeSet<>(MonitoringFiles.metricNames());
        missing.removeAll(documented);
        assertTrue(missing.isEmpty(), "not in the metric table of docs/operations.md: " + missing);
    }

    @Test
    void namesInParsesPromQl() {
        assertEquals(Set.of("a_total", "b_seconds_bucket"), MonitoringFiles.namesIn(
                "sum by (topic, reason) (rate(a_total{topic=\"x y\", d=~\"$domain\", e!~'q{z}'}[$__rate_interval] offset 5m))"
                        + " / on (domain) group_left (kind) histogram_quantile(0.95, sum without (le) (rate(b_seconds_bucket[1h30m])))"));
        assertEquals(Set.of("lag"), MonitoringFiles.namesIn("deriv((sum by (topic) (lag))[15m:1m]) > 0 and sum by (topic) (lag) > 1e3"));
        assertEquals(Set.of("loss"), MonitoringFiles.namesIn("(loss != loss) or (abs(loss) == Inf) unless bool NaN # a comment naming fake_metric\n"));
        assertEquals(Set.of("ts", "steps_total"), MonitoringFiles.namesIn(
                "(time() - ts > 6 * 3600)\n  and on (domain) (sum by (domain) (increase(steps_total[1h])) > 0)"));
        assertEquals(Set.of("up"), MonitoringFiles.namesIn("up{job=\"morastream\"} == 0"));
        assertEquals(Set.of("x"), MonitoringFiles.namesIn("sum(x) by (instance) > ${threshold}"));
    }

    /** Every backquoted name in the first column of the tables under "## Metrics" in docs/operations.md. */
    private static Set<String> documentedMetrics() throws IOException {
        List<String> lines = Files.readAllLines(MonitoringFiles.operationsDoc());
        Set<String> out = new TreeSet<>();
        Pattern name = Pattern.compile("`([a-zA-Z_:][a-zA-Z0-9_:]*)`");
        boolean inMetrics = false;
        for (String line : lines) {
            if (line.startsWith("## ")) {
                inMetrics = line.equals("## Metrics");
            } else if (inMetrics && line.startsWith("|")) {
                String[] cells = line.split("\\|");
                if (cells.length > 1) {
                    Matcher m = name.matcher(cells[1]);
                    while (m.find()) {
                        out.add(m.group(1));
                    }
                }
            }
        }
        assertFalse(out.isEmpty(), "no metric table under '## Metrics' in docs/operations.md");
        return out;
    }
}
