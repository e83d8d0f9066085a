package dev.morastream.ops.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.errors.NotFoundException;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.trainer.TrainerActor;
import dev.morastream.models.corpus.SyntheticWorld;
import dev.morastream.models.eval.TextMetrics;
import dev.morastream.ops.monitoring.MonitoringFiles;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole system in one JVM, as {@code bin/mora run} starts it: embedded broker, the shipped tiny
 * model, a trainer, the evaluator and supervisor, serving over HTTP. Facts produced to the topic are
 * learned and promoted, and the official OpenAI Java SDK then gets them answered better, stamped
 * with the new version. The methods run in order on one job (a promotion takes a minute on 2 cores).
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class MoraJobTest {
    static final String TOKEN = "job-admin-token";
    static final String TOPIC = "facts-in";
    static final String DOMAIN = "facts";
    static final ObjectMapper JSON = new ObjectMapper();
    static final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    @TempDir
    static Path dir;
    static MoraJob job;
    static String base;
    static OpenAIClient sdk;
    static List<String[]> facts; // prompt, completion
    static int good;
    static Map<String, Double> before;

    static Map<String, Object> settings(Path dataDir) {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("morastream.data-dir", dataDir.toString());
        o.put("morastream.http.port", 0);
        o.put("morastream.http.admin-token", TOKEN);
        o.put("morastream.http.max-body-bytes", 4096);
        o.put("morastream.demo.enabled", false);
        o.put("morastream.kafka.topics", List.of(TOPIC));
        o.put("morastream.kafka.partitions", 2);
        o.put("morastream.kafka.lag-interval", "1s");
        o.put("morastream.stream.domains", List.of(DOMAIN));
        o.put("morastream.stream.default-domain", DOMAIN);
        o.put("morastream.stream.idle-flush", "1s");
        o.put("morastream.trainer.lr", 3e-3);
        o.put("morastream.trainer.checkpoint-every-steps", 10);
        o.put("morastream.trainer.checkpoint-every", "3s");
        o.put("morastream.evaluator.tasks-per-set", 3);
        o.put("morastream.evaluator.heldout-chars", 1200);
        // this test checks that learning gets promoted; the gate's regressions are PromotionPolicyTest's
        o.put("morastream.promotion.memorization-margin", 0.5);
        o.put("morastream.promotion.downstream-tolerance", 1.0);
        o.put("morastream.promotion.retention-tolerance", 10.0);
        o.put("morastream.promotion.max-kl", 0);
        return o;
    }

    @BeforeAll
    static void start() throws Exception {
        JobConfig cfg = JobConfig.load(null, settings(dir.resolve("data")), Path.of("..").toAbsolutePath().normalize());
        job = MoraJob.start(cfg);
        base = "http://127.0.0.1:" + job.port();
        job.warm().get(60, TimeUnit.SECONDS);
        sdk = OpenAIOkHttpClient.builder().baseUrl(base + "/v1").apiKey("unused").maxRetries(0).timeout(Duration.ofSeconds(60)).build();
        SyntheticWorld w = SyntheticWorld.generate(99, 4, 4, SyntheticWorld.base().names());
        facts = new ArrayList<>();
        w.countries().forEach(c -> facts.add(new String[] {"Q: What is the capital of " + c.name() + "?\nA:", " " + c.capital()}));
        w.people().forEach(p -> facts.add(new String[] {"Q: What does " + p.name() + " do?\nA:", " " + p.job()}));
    }

    @AfterAll
    static void stop() throws Exception {
        if (sdk != null) {
            sdk.close();
        }
        if (job != null) {
            job.close();
        }
    }

    static Completion ask(String model, String prompt) {
        return sdk.completions().create(CompletionCreateParams.builder().model(model).prompt(prompt).maxTokens(8).temperature(0.0)
                .stop("\n").build());
    }

    /** Mean character accuracy of {@code model}'s answers to the facts, and the versions that answered. */
    static double accuracy(String model, Set<String> versions) {
        double sum = 0;
        for (String[] f : facts) {
            Completion c = ask(model, f[0]);
            versions.add(c.model());
            sum += TextMetrics.charAccuracy(c.choices().get(0).text(), f[1]);
        }
        return sum / facts.size();
    }

    static void await(String what, Duration timeout, BooleanSupplier ok) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!ok.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeout + " waiting for " + what);
            }
            Thread.sleep(200);
        }
    }

    @Test
    @Order(1)
    void factsFromTheTopicAreLearnedPromotedAndServedThroughTheOpenAiSdk() throws Exception {
        Set<String> baseVersions = new HashSet<>();
        double baseAcc = accuracy("tiny", baseVersions);
        assertEquals(Set.of("tiny"), baseVersions);
        // nothing promoted yet: the domain is not a model
        assertTrue(assertThrowsNotFound(() -> ask(DOMAIN, facts.get(0)[0])));

        try (KafkaProducer<String, String> p = producer()) {
            int id = 0;
            for (int round = 0; round < 30; round++) {
                List<String[]> order = new ArrayList<>(facts);
                Collections.shuffle(order, new java.util.Random(round));
                for (String[] f : order) {
                    String v = JSON.createObjectNode().put("id", "f-" + id++).put("prompt", f[0]).put("completion", f[1]).toString();
                    p.send(new ProducerRecord<>(TOPIC, v));
                }
            }
            good = id;
            // bad records: each goes to the dead-letter topic, the stream goes on
            p.send(new ProducerRecord<>(TOPIC, "{\"prompt\": \"unterminated"));
            p.send(new ProducerRecord<>(TOPIC, ""));
            p.send(new ProducerRecord<>(TOPIC, "{\"text\": \"a record of a domain nobody trains\", \"domain\": \"elsewhere\"}"));
            p.flush();
        }

        await("a promotion of " + DOMAIN, Duration.ofMinutes(5), () -> job.pool().serving(DOMAIN).isPresent());
        AdapterVersion promoted = job.pool().serving(DOMAIN).orElseThrow();
        Set<String> versions = new HashSet<>();
        double acc = accuracy(DOMAIN, versions);
        System.out.printf("facts char accuracy: base %.3f, %s %.3f (%s)%n", baseAcc, promoted, acc, versions);
        assertTrue(acc >= baseAcc + 0.3, "learned facts not answered better: base " + baseAcc + ", adapter " + acc);
        for (String v : versions) {
            assertTrue(v.startsWith(DOMAIN + "@v"), "response not stamped with an adapter version: " + v);
        }
        // the audit log, through the API
        JsonNode adapters = JSON.readTree(get("/v1/adapters").body());
        assertTrue(adapters.path("audit").toString().contains("\"promoted\""), adapters.toString());
        // other nodes can follow: the promotion is on the compacted topic
        assertTrue(promotionsTopic().stream().anyMatch(r -> r.key().equals(DOMAIN) && r.value().contains("\"version\"")));
    }

    @Test
    @Order(2)
    void everyRecordIsTrainedOnceAndBadOnesAreDeadLettered() throws Exception {
        await("all records trained", Duration.ofMinutes(3), () -> job.stats().recordsTrained.get() >= good);
        assertEquals(3, job.stats().rejected.get());
        // the ledger of the checkpoints holds each record once (after the next checkpoint)
        Path ckpt = job.config().checkpoints(DOMAIN);
        await("every record in a checkpoint", Duration.ofMinutes(1), () -> ledger(ckpt).size() >= good);
        List<String> ids = ledger(ckpt);
        assertEquals(good, ids.size());
        assertEquals(good, new HashSet<>(ids).size(), "a record was trained twice");
    }

    @Test
    @Order(3)
    void metricsParseAsPrometheusTextAndCoverEveryPhase() throws Exception {
        await("consumer lag measured", Duration.ofSeconds(30), () -> scrape().contains("mora_stream_consumer_lag_records{"));
        String text = scrape();
        Map<String, Double> samples = parsePrometheus(text);
        Set<String> names = new HashSet<>();
        samples.keySet().forEach(k -> names.add(k.contains("{") ? k.substring(0, k.indexOf('{')) : k));
        for (String n : MonitoringFiles.metricNames()) {
            if (n.startsWith("jvm_gc_pause")) {
                continue; // appears after the first collection only
            }
            assertTrue(names.contains(n), "/metrics lacks " + n);
        }
        assertEquals(3.0, sum(samples, "mora_stream_records_dead_lettered_total"), 0.0);
        assertEquals(good, sum(samples, "mora_stream_records_trained_total"), 0.0);
        assertTrue(sum(samples, "mora_promotions_total") >= 1);
        assertTrue(sum(samples, "mora_train_steps_total") > 0);
        assertTrue(samples.keySet().stream().anyMatch(k -> k.startsWith("mora_eval_score{") && k.contains("role=\"candidate\"")));
    }

    @Test
    @Order(4)
    void hotSwapUnderLoadWhilePromotionsHappen() throws Exception {
        awaitQuiet();
        AdapterRegistry reg = new AdapterRegistry(job.config().registryDir(), 10);
        List<AdapterVersion> stored = reg.versions(DOMAIN).stream().map(AdapterRegistry.Entry::version).toList();
        assertTrue(stored.size() >= 2, "versions: " + stored);
        List<long[]> spans = Collections.synchronizedList(new ArrayList<>());
        List<String> served = Collections.synchronizedList(new ArrayList<>());
        List<Throwable> failures = Collections.synchronizedList(new ArrayList<>());
        List<Object[]> swaps = Collections.synchronizedList(new ArrayList<>()); // start, end, version
        swaps.add(new Object[] {Long.MIN_VALUE, Long.MIN_VALUE, job.pool().serving(DOMAIN).orElseThrow().toString()});
        AtomicBoolean run = new AtomicBoolean(true);
        ExecutorService clients = Executors.newFixedThreadPool(3);
        List<Future<?>> fs = new ArrayList<>();
        for (int c = 0; c < 3; c++) {
            int k = c;
            fs.add(clients.submit(() -> {
                int i = 0;
                while (run.get()) {
                    long t0 = System.nanoTime();
                    try {
                        Completion r = ask(DOMAIN, facts.get((k + i++) % facts.size())[0]);
                        spans.add(new long[] {t0, System.nanoTime()});
                        served.add(r.model());
                    } catch (Throwable t) {
                        failures.add(t);
                    }
                }
            }));
        }
        for (int s = 0; s < 6; s++) {
            AdapterVersion target = stored.get(s % stored.size());
            String path = "/v1/adapters/" + DOMAIN + "/" + (s % 2 == 0 ? "promote" : "promote");
            long t0 = System.nanoTime();
            HttpResponse<String> r = post(path, "{\"version\": \"" + target + "\"}", TOKEN);
            assertEquals(200, r.statusCode(), r.body());
            swaps.add(new Object[] {t0, System.nanoTime(), target.toString()});
            Thread.sleep(300);
        }
        run.set(false);
        for (Future<?> f : fs) {
            f.get(60, TimeUnit.SECONDS);
        }
        clients.shutdown();
        assertTrue(failures.isEmpty(), "failed requests: " + failures);
        assertTrue(served.size() >= 6, "requests: " + served.size());
        for (int i = 0; i < served.size(); i++) {
            String v = served.get(i);
            long[] span = spans.get(i);
            assertTrue(liveDuring(swaps, v, span[0], span[1]), v + " was not live during its request");
        }
        // the moves went through the supervisor: they are in the audit log, as promotions by the admin (not rollbacks)
        List<String> audit = Files.readAllLines(job.config().auditLog());
        assertEquals(6, audit.stream().filter(l -> l.contains("\"promoted_by_admin\"")).count());
        assertEquals(0, audit.stream().filter(l -> l.contains("\"rolled_back\"")).count());
    }

    @Test
    @Order(5)
    void adminEndpointsNeedTheTokenAndBadRequestsGet4xx() throws Exception {
        String v = "{\"version\": \"" + DOMAIN + "@v1\"}";
        assertEquals(401, post("/v1/adapters/" + DOMAIN + "/promote", v, null).statusCode());
        assertEquals(403, post("/v1/adapters/" + DOMAIN + "/rollback", v, "wrong").statusCode());
        HttpResponse<String> big = post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": \"" + "x".repeat(5000) + "\"}", null);
        assertEquals(413, big.statusCode(), big.body());
        assertTrue(assertThrowsNotFound(() -> ask("no-such-model", "Q: hi\nA:")));
        assertEquals(200, get("/health/ready").statusCode());
    }

    // ---- helpers ----

    static boolean assertThrowsNotFound(Runnable r) {
        try {
            r.run();
            return false;
        } catch (NotFoundException e) {
            return true;
        }
    }

    /** Waits until everything is trained, checkpointed and judged: no version appears for a while. */
    static void awaitQuiet() throws Exception {
        AdapterRegistry reg = new AdapterRegistry(job.config().registryDir(), 10);
        int[] last = {-1};
        long[] since = {System.nanoTime()};
        await("the trainer and supervisor to go quiet", Duration.ofMinutes(3), () -> {
            try {
                List<AdapterRegistry.Entry> vs = reg.versions(DOMAIN);
                String latest = vs.get(vs.size() - 1).version().toString();
                boolean judged = Files.readAllLines(job.config().auditLog()).stream().anyMatch(l -> l.contains("\"version\":\"" + latest + "\""));
                if (vs.size() != last[0] || !judged) {
                    last[0] = vs.size();
                    since[0] = System.nanoTime();
                    return false;
                }
                return System.nanoTime() - since[0] > TimeUnit.SECONDS.toNanos(8);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
    }

    static boolean liveDuring(List<Object[]> swaps, String version, long from, long to) {
        for (int i = 0; i < swaps.size(); i++) {
            if (!swaps.get(i)[2].equals(version)) {
                continue;
            }
            long liveFrom = (long) swaps.get(i)[0];
            long liveTo = i + 1 < swaps.size() ? (long) swaps.get(i + 1)[1] : Long.MAX_VALUE;
            if (liveFrom <= to && from <= liveTo) {
                return true;
            }
        }
        return false;
    }

    static List<String> ledger(Path ckpt) {
        try {
            return TrainerActor.ledger(ckpt);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    static KafkaProducer<String, String> producer() {
        return new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, job.bootstrapServers(), ProducerConfig.ACKS_CONFIG, "all"),
                new StringSerializer(), new StringSerializer());
    }

    static List<ConsumerRecord<String, String>> promotionsTopic() {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, job.bootstrapServers());
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.GROUP_ID_CONFIG, "test-promotions-" + System.nanoTime());
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
            consumer.subscribe(List.of(job.config().kafka().promotionsTopic()));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (out.isEmpty() && System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(500)).forEach(out::add);
            }
        }
        return out;
    }

    static String scrape() {
        try {
            HttpResponse<String> r = get("/metrics");
            assertEquals(200, r.statusCode());
            return r.body();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static final Pattern SAMPLE = Pattern.compile(
            "([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(?:[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\]|\\\\.)*\",?)*\\})? (\\S+)( -?\\d+)?");

    /** Prometheus text exposition format 0.0.4, strictly: every line a comment or a sample. */
    static Map<String, Double> parsePrometheus(String text) {
        Map<String, Double> out = new LinkedHashMap<>();
        for (String line : text.split("\n")) {
            if (line.isEmpty() || line.startsWith("# HELP ") || line.startsWith("# TYPE ")) {
                continue;
            }
            Matcher m = SAMPLE.matcher(line);
            assertTrue(m.matches(), "not Prometheus text: " + line);
            String v = m.group(3);
            double d = switch (v) {
                case "NaN" -> Double.NaN;
                case "+Inf" -> Double.POSITIVE_INFINITY;
                case "-Inf" -> Double.NEGATIVE_INFINITY;
                default -> Double.parseDouble(v);
            };
            assertFalse(out.containsKey(m.group(1) + (m.group(2) == null ? "" : m.group(2))), "duplicate sample " + line);
            out.put(m.group(1) + (m.group(2) == null ? "" : m.group(2)), d);
        }
        return out;
    }

    static double sum(Map<String, Double> samples, String name) {
        return samples.entrySet().stream().filter(e -> e.getKey().equals(name) || e.getKey().startsWith(name + "{"))
                .mapToDouble(Map.Entry::getValue).sum();
    }

    static HttpResponse<String> get(String path) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(30)).GET().build(),
                HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    }

    static HttpResponse<String> post(String path, String body, String token) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(60))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        if (token != null) {
            b.header("Authorization", "Bearer " + token);
        }
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    }
}
