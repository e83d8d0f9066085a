package dev.morastream.ops.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.models.corpus.SyntheticWorld;
import dev.morastream.models.eval.TextMetrics;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two domains trained side by side in one job, on one topic and one shared base model: each
 * trainer learns its own facts into its own adapter (a model-wide adapter once made one trainer
 * train the other's), both get promoted, each alias answers its own facts and knows nothing of the
 * other's, and while both train every answer comes from a version of the domain asked for.
 */
class MultiDomainJobTest {
    static final String TOPIC = "two-domains";
    static final double LEARNED = 0.8; // char accuracy each promoted alias reaches on its own facts
    static final double NO_TRANSFER = 0.1; // at most this above the base on the other domain's facts
    static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path dir;
    static MoraJob job;
    static OpenAIClient sdk;
    static Map<String, List<String[]>> facts = new LinkedHashMap<>(); // domain -> (prompt, completion)

    @BeforeAll
    static void start() throws Exception {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("morastream.data-dir", dir.resolve("data").toString());
        o.put("morastream.http.port", 0);
        o.put("morastream.demo.enabled", false);
        o.put("morastream.kafka.topics", List.of(TOPIC));
        o.put("morastream.kafka.lag-interval", "1s");
        o.put("morastream.stream.domains", List.of("alpha", "beta"));
        o.put("morastream.stream.default-domain", "");
        o.put("morastream.stream.idle-flush", "1s");
        o.put("morastream.stream.replay.fraction", 0.25);
        o.put("morastream.trainer.lr", 3e-3);
        o.put("morastream.trainer.checkpoint-every-steps", 10);
        o.put("morastream.trainer.checkpoint-every", "3s");
        // beta's own settings: a larger rank (checked on its published versions)
        o.put("morastream.stream.domain-settings.beta.rank", 12);
        o.put("morastream.stream.domain-settings.beta.lr", 4e-3);
        o.put("morastream.evaluator.tasks-per-set", 3);
        o.put("morastream.evaluator.heldout-chars", 1200);
        // learning is what this test checks; the gate's regressions are PromotionPolicyTest's
        o.put("morastream.promotion.downstream-tolerance", 1.0);
        o.put("morastream.promotion.retention-tolerance", 10.0);
        o.put("morastream.promotion.max-kl", 0);
        JobConfig cfg = JobConfig.load(null, o, Path.of("..").toAbsolutePath().normalize());
        job = MoraJob.start(cfg);
        job.warm().get(60, TimeUnit.SECONDS);
        sdk = OpenAIOkHttpClient.builder().baseUrl("http://127.0.0.1:" + job.port() + "/v1").apiKey("unused").maxRetries(0)
                .timeout(Duration.ofSeconds(60)).build();
        // capitals only (random names: nothing of one domain's facts helps with the other's)
        Set<String> avoid = new HashSet<>(SyntheticWorld.base().names());
        for (String d : List.of("alpha", "beta")) {
            SyntheticWorld w = SyntheticWorld.generate(d.equals("alpha") ? 11 : 12, 8, 0, avoid);
            avoid.addAll(w.names());
            List<String[]> fs = new ArrayList<>();
            w.countries().forEach(c -> fs.add(new String[] {"Q: What is the capital of " + c.name() + "?\nA:", " " + c.capital()}));
            facts.put(d, fs);
        }
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

    static String ask(String model, String prompt, Set<String> versions) {
        Completion c = sdk.completions().create(CompletionCreateParams.builder().model(model).prompt(prompt).maxTokens(8)
                .temperature(0.0).stop("\n").build());
        versions.add(c.model());
        return c.choices().get(0).text();
    }

    static double accuracy(String model, List<String[]> fs, Set<String> versions) {
        double sum = 0;
        for (String[] f : fs) {
            sum += TextMetrics.charAccuracy(ask(model, f[0], versions), f[1]);
        }
        return sum / fs.size();
    }

    @Test
    void twoDomainsOnOneTopicEachLearnTheirOwnFactsAndArePromoted() throws Exception {
        Map<String, Double> base = new LinkedHashMap<>();
        for (String d : facts.keySet()) {
            base.put(d, accuracy("tiny", facts.get(d), new HashSet<>()));
        }
        int produced = 0;
        try (KafkaProducer<String, String> p = new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG,
                job.bootstrapServers(), ProducerConfig.ACKS_CONFIG, "all"), new StringSerializer(), new StringSerializer())) {
            for (int round = 0; round < 40; round++) {
                for (String d : facts.keySet()) {
                    List<String[]> order = new ArrayList<>(facts.get(d));
                    Collections.shuffle(order, new Random(round));
                    for (String[] f : order) {
                        p.send(new ProducerRecord<>(TOPIC, JSON.createObjectNode().put("id", d + "-" + produced++)
                                .put("domain", d).put("prompt", f[0]).put("completion", f[1]).toString()));
                    }
                }
            }
        }
        int total = produced;
        MoraJobTest.await("a promotion of both domains", Duration.ofMinutes(6),
                () -> job.pool().serving("alpha").isPresent() && job.pool().serving("beta").isPresent());

        // serving while both trainers train: every answer comes from a version of the domain asked
        List<String> wrong = Collections.synchronizedList(new ArrayList<>());
        List<Throwable> failures = Collections.synchronizedList(new ArrayList<>());
        int[] answered = {0};
        AtomicBoolean run = new AtomicBoolean(true);
        ExecutorService clients = Executors.newFixedThreadPool(2);
        List<Future<?>> fs = new ArrayList<>();
        for (String d : facts.keySet()) {
            fs.add(clients.submit(() -> {
                int i = 0;
                while (run.get()) {
                    Set<String> vs = new HashSet<>();
                    try {
                        ask(d, facts.get(d).get(i++ % facts.get(d).size())[0], vs);
                        synchronized (answered) {
                            answered[0]++;
                        }
                    } catch (Throwable t) {
                        failures.add(t);
                    }
                    vs.stream().filter(v -> !v.startsWith(d + "@v")).forEach(v -> wrong.add(d + " answered by " + v));
                }
            }));
        }
        MoraJobTest.await("every record trained", Duration.ofMinutes(5), () -> job.stats().recordsTrained.get() >= total);
        awaitQuiet();
        run.set(false);
        for (Future<?> f : fs) {
            f.get(60, TimeUnit.SECONDS);
        }
        clients.shutdown();
        assertTrue(failures.isEmpty(), "failed requests while training: " + failures);
        assertTrue(wrong.isEmpty(), "answers from another domain's version: " + wrong);
        assertTrue(answered[0] >= 4, "requests answered while training: " + answered[0]);

        for (String d : facts.keySet()) {
            String other = d.equals("alpha") ? "beta" : "alpha";
            Set<String> versions = new HashSet<>();
            double own = accuracy(d, facts.get(d), versions);
            double foreign = accuracy(d, facts.get(other), versions);
            System.out.printf("%s (%s): own facts %.3f (base %.3f), %s's facts %.3f (base %.3f)%n", d, versions, own, base.get(d),
                    other, foreign, base.get(other));
            assertTrue(own >= LEARNED, d + " answers its own facts with char accuracy " + own + " < " + LEARNED);
            assertTrue(foreign <= base.get(other) + NO_TRANSFER,
                    d + " answers " + other + "'s facts with " + foreign + ", the base with " + base.get(other));
            versions.forEach(v -> assertTrue(v.startsWith(d + "@v"), d + " answered by " + v));
        }
        // per-domain settings: beta's versions have its rank, alpha's the default
        AdapterRegistry reg = new AdapterRegistry(job.config().registryDir(), 10);
        assertEquals(8, rank(reg.versions("alpha").get(0)));
        assertEquals(12, rank(reg.versions("beta").get(0)));
    }

    static int rank(AdapterRegistry.Entry e) {
        try {
            JsonNode c = JSON.readTree(e.dir().resolve("adapter_config.json").toFile());
            return c.path("r").asInt();
        } catch (java.io.IOException x) {
            throw new java.io.UncheckedIOException(x);
        }
    }

    /** Until no version of either domain appears for a while and the latest of each was judged. */
    static void awaitQuiet() throws Exception {
        AdapterRegistry reg = new AdapterRegistry(job.config().registryDir(), 10);
        String[] last = {""};
        long[] since = {System.nanoTime()};
        MoraJobTest.await("both trainers and the supervisor to go quiet", Duration.ofMinutes(4), () -> {
            try {
                List<String> audit = java.nio.file.Files.readAllLines(job.config().auditLog());
                StringBuilder now = new StringBuilder();
                boolean judged = true;
                for (String d : facts.keySet()) {
                    List<AdapterRegistry.Entry> vs = reg.versions(d);
                    AdapterVersion latest = vs.get(vs.size() - 1).version();
                    now.append(latest).append(' ');
                    judged &= audit.stream().anyMatch(l -> l.contains("\"version\":\"" + latest + "\""));
                }
                if (!now.toString().equals(last[0]) || !judged) {
                    last[0] = now.toString();
                    since[0] = System.nanoTime();
                    return false;
                }
                return System.nanoTime() - since[0] > TimeUnit.SECONDS.toNanos(8);
            } catch (Exception e) {
                return false;
            }
        });
    }
}
