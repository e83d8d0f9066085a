package dev.morastream.ops.serve;

import dev.morastream.actors.serving.Served;
import dev.morastream.actors.serving.ServingPool;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.models.generate.GenerationConfig;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ServingPoolTest {
    static final ServingPool.Listener QUIET = new ServingPool.Listener() {};
    static final GenerationConfig CFG = GenerationConfig.greedy(6).withStopOnEos(false);
    @TempDir static Path dir;
    static ServeFixture fx;

    @BeforeAll
    static void setUp() throws Exception {
        fx = new ServeFixture(dir, 3);
    }

    @AfterAll
    static void tearDown() {
        fx.close();
    }

    /** A swap as the test saw it: the alias may have moved at any time in [start, end]. */
    record Swap(long start, long end, AdapterVersion version) {}

    record Answer(long submitted, long done, Served served) {}

    @Test
    void swapUnderLoadDropsNothingAndStampsALiveVersion() throws Exception {
        SimpleMeterRegistry meters = new SimpleMeterRegistry();
        try (ServingPool pool = new ServingPool(fx.model, fx.tokenizer, "tiny", fx.registry, new ServingPool.Options(2, 64, 2), meters)) {
            // what each version answers on its own: a response's text proves which version made it
            Map<String, String> reference = new HashMap<>();
            for (AdapterVersion v : fx.versions) {
                reference.put(v.toString(), pool.submit(v.toString(), ServeFixture.PROMPT, CFG, QUIET).get().result().text());
            }
            assertEquals(3, new HashSet<>(reference.values()).size(), "versions must answer differently: " + reference);

            List<Swap> swaps = Collections.synchronizedList(new ArrayList<>());
            swaps.add(new Swap(Long.MIN_VALUE, Long.MIN_VALUE, fx.versions.get(0))); // the registry's alias
            int clients = 4;
            int perClient = 12;
            Semaphore completions = new Semaphore(0);
            ExecutorService cs = Executors.newFixedThreadPool(clients);
            List<Future<List<Answer>>> fs = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                fs.add(cs.submit(() -> {
                    List<Answer> out = new ArrayList<>();
                    for (int i = 0; i < perClient; i++) {
                        long t0 = System.nanoTime();
                        Served s = pool.submit(ServeFixture.DOMAIN, ServeFixture.PROMPT, CFG, QUIET).get(30, TimeUnit.SECONDS);
                        out.add(new Answer(t0, System.nanoTime(), s));
                        completions.release();
                    }
                    return out;
                }));
            }
            int total = clients * perClient;
            int done = 0;
            int k = 1;
            while (done + 4 <= total) { // a swap after every 4 answers, until the clients are nearly done
                completions.acquire(4);
                done += 4;
                AdapterVersion next = fx.versions.get(k++ % fx.versions.size());
                long s0 = System.nanoTime();
                pool.swap(next);
                swaps.add(new Swap(s0, System.nanoTime(), next));
            }
            List<Answer> answers = new ArrayList<>();
            for (Future<List<Answer>> f : fs) {
                answers.addAll(f.get(60, TimeUnit.SECONDS)); // a failed request fails the test here
            }
            cs.shutdown();
            assertEquals(total, answers.size());
            assertTrue(swaps.size() >= 8, "swaps: " + swaps.size());
            Map<String, Integer> byVersion = new HashMap<>();
            for (Answer a : answers) {
                String v = a.served().servedBy();
                byVersion.merge(v, 1, Integer::sum);
                assertEquals(reference.get(v), a.served().result().text(), "the text was not made by " + v);
                assertTrue(liveDuring(swaps, v, a.submitted(), a.done()), v + " was not live during its request");
            }
            assertTrue(byVersion.size() >= 2, "answers came from one version only: " + byVersion);
            assertEquals(total + 3.0, meters.get("mora.serving.requests").tag("outcome", "ok").counters().stream()
                    .mapToDouble(c -> c.count()).sum());
        }
    }

    /** Version i is live at most from swap i's start to swap i+1's end. */
    static boolean liveDuring(List<Swap> swaps, String version, long from, long to) {
        for (int i = 0; i < swaps.size(); i++) {
            if (!swaps.get(i).version().toString().equals(version)) {
                continue;
            }
            long liveFrom = swaps.get(i).start();
            long liveTo = i + 1 < swaps.size() ? swaps.get(i + 1).end() : Long.MAX_VALUE;
            if (liveFrom <= to && from <= liveTo) {
                return true;
            }
        }
        return false;
    }

    @Test
    void fullQueueRefusesAtOnce() throws Exception {
        try (ServingPool pool = new ServingPool(fx.model, fx.tokenizer, "tiny", fx.registry, new ServingPool.Options(1, 1, 1), new SimpleMeterRegistry())) {
            CountDownLatch started = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            GenerationConfig cfg = GenerationConfig.greedy(8).withStopOnEos(false);
            CompletableFuture<Served> running = pool.submit("tiny", ServeFixture.PROMPT, cfg, s -> {
                started.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            assertTrue(started.await(20, TimeUnit.SECONDS), "the first request never produced text");
            CompletableFuture<Served> queued = pool.submit(ServeFixture.DOMAIN, ServeFixture.PROMPT, cfg, QUIET);
            assertEquals(1, pool.queueDepth());
            long t0 = System.nanoTime();
            assertThrows(ServingPool.Overloaded.class, () -> pool.submit("tiny", ServeFixture.PROMPT, cfg, QUIET));
            assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(1), "refusal must not wait");
            release.countDown();
            assertEquals("tiny", running.get(30, TimeUnit.SECONDS).servedBy());
            assertEquals(fx.versions.get(0).toString(), queued.get(30, TimeUnit.SECONDS).servedBy());
        }
    }

    @Test
    void namesResolveAndWarmUpMakesReady() throws Exception {
        try (ServingPool pool = new ServingPool(fx.model, fx.tokenizer, "tiny", fx.registry, ServingPool.Options.defaults(), new SimpleMeterRegistry())) {
            assertThrows(ServingPool.UnknownModel.class, () -> pool.submit("nope", "x", CFG, QUIET));
            assertThrows(ServingPool.UnknownModel.class, () -> pool.submit("facts@v99", "x", CFG, QUIET));
            assertThrows(ServingPool.UnknownModel.class, () -> pool.submit("facts@vX", "x", CFG, QUIET));
            assertEquals("tiny", pool.describe("tiny").orElseThrow());
            assertTrue(!pool.ready());
            pool.warmUp().get(30, TimeUnit.SECONDS);
            assertTrue(pool.ready());
        }
    }

    @Test
    void concurrentRequestsOfDifferentVersionsBatchAndGetWhatEachGetsAlone() throws Exception {
        List<String> models = List.of("tiny", fx.versions.get(0).toString(), fx.versions.get(1).toString(), fx.versions.get(2).toString());
        List<String> prompts = List.of(ServeFixture.PROMPT, "Q: Who wrote Hamlet?\nA:", "Once upon a time", "The");
        Map<String, String> alone = new HashMap<>();
        try (ServingPool pool = new ServingPool(fx.model, fx.tokenizer, "tiny", fx.registry, new ServingPool.Options(1, 64, 4), new SimpleMeterRegistry())) {
            for (int i = 0; i < 8; i++) { // one row: each request alone
                String key = models.get(i % 4) + "|" + prompts.get(i % prompts.size()) + "|" + (4 + i);
                alone.put(key, pool.submit(models.get(i % 4), prompts.get(i % prompts.size()), GenerationConfig.greedy(4 + i), QUIET)
                        .get(30, TimeUnit.SECONDS).result().text());
            }
        }
        try (ServingPool pool = new ServingPool(fx.model, fx.tokenizer, "tiny", fx.registry, new ServingPool.Options(8, 64, 4), new SimpleMeterRegistry())) {
            List<CompletableFuture<Served>> fs = new ArrayList<>();
            List<String> keys = new ArrayList<>();
            List<StringBuilder> streamed = new ArrayList<>();
            for (int i = 0; i < 8; i++) {
                StringBuilder sb = new StringBuilder();
                streamed.add(sb);
                keys.add(models.get(i % 4) + "|" + prompts.get(i % prompts.size()) + "|" + (4 + i));
                fs.add(pool.submit(models.get(i % 4), prompts.get(i % prompts.size()), GenerationConfig.greedy(4 + i), sb::append));
            }
            for (int i = 0; i < 8; i++) {
                Served s = fs.get(i).get(30, TimeUnit.SECONDS);
                assertEquals(models.get(i % 4), s.servedBy());
                assertEquals(alone.get(keys.get(i)), s.result().text(), "request " + i + " batched");
                assertEquals(s.result().text(), streamed.get(i).toString());
            }
            // a request cancelled while it runs leaves the batch; the next one still runs
            CountDownLatch first = new CountDownLatch(1);
            CompletableFuture<Served> cancelled = pool.submit("tiny", ServeFixture.PROMPT,
                    GenerationConfig.greedy(200).withStopOnEos(false), d -> first.countDown());
            assertTrue(first.await(20, TimeUnit.SECONDS));
            cancelled.cancel(false);
            assertEquals(alone.get(keys.get(1)), pool.submit(models.get(1), prompts.get(1), GenerationConfig.greedy(5), QUIET)
                    .get(30, TimeUnit.SECONDS).result().text());
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (pool.running() > 0 && System.nanoTime() < until) {
                Thread.onSpinWait();
            }
            assertEquals(0, pool.running(), "the cancelled row left the batch");
        }
    }
}
