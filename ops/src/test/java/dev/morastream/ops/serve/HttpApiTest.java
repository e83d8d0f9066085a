package dev.morastream.ops.serve;

import dev.morastream.actors.serving.ServingPool;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.JsonValue;
import com.openai.core.http.StreamResponse;
import com.openai.errors.NotFoundException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import com.openai.models.models.Model;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.ops.metrics.Metrics;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The real server on a free port, checked with the official OpenAI Java SDK and a plain HTTP client. */
class HttpApiTest {
    static final String TOKEN = "s3cret-token";
    static final ObjectMapper JSON = new ObjectMapper();
    @TempDir static Path dir;
    static ServeFixture fx;
    static Metrics metrics;
    static ServingPool pool;
    static HttpApi api;
    static ActorSystem<Void> system;
    static ServerBinding binding;
    static String base;
    static OpenAIClient sdk;
    static final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    @BeforeAll
    static void start() throws Exception {
        fx = new ServeFixture(dir, 2);
        metrics = new Metrics();
        pool = new ServingPool(fx.model, fx.tokenizer, "tiny", fx.registry, ServingPool.Options.defaults(), metrics.registry());
        api = new HttpApi(pool, metrics, new HttpApi.Settings(TOKEN, 4096, 64));
        system = ActorSystem.create(Behaviors.empty(), "mora-http-test");
        binding = api.bind(system, "127.0.0.1", 0).toCompletableFuture().get(20, TimeUnit.SECONDS);
        base = "http://127.0.0.1:" + binding.localAddress().getPort();
        pool.warmUp().get(30, TimeUnit.SECONDS);
        sdk = OpenAIOkHttpClient.builder().baseUrl(base + "/v1").apiKey("unused").maxRetries(0).timeout(Duration.ofSeconds(30)).build();
    }

    @AfterAll
    static void stop() throws Exception {
        sdk.close();
        binding.unbind().toCompletableFuture().get(10, TimeUnit.SECONDS);
        system.terminate();
        system.getWhenTerminated().toCompletableFuture().get(20, TimeUnit.SECONDS);
        api.close();
        pool.close();
        metrics.close();
        fx.close();
    }

    static CompletionCreateParams greedy(String model, int maxTokens) {
        return CompletionCreateParams.builder().model(model).prompt(ServeFixture.PROMPT).maxTokens(maxTokens).temperature(0.0).build();
    }

    static String direct(String model, int maxTokens) throws Exception {
        return pool.submit(model, ServeFixture.PROMPT, GenerationConfig.greedy(maxTokens), (java.util.function.Consumer<String>) null)
                .get(30, TimeUnit.SECONDS).result().text();
    }

    @Test
    void sdkCompletionFromTheBaseModel() throws Exception {
        Completion c = sdk.completions().create(greedy("tiny", 8));
        assertEquals("tiny", c.model());
        assertEquals(1, c.choices().size());
        assertEquals(direct("tiny", 8), c.choices().get(0).text());
        assertEquals(JsonValue.from("tiny"), c._additionalProperties().get("adapter_version"));
        assertTrue(c.usage().orElseThrow().promptTokens() > 0);
    }

    @Test
    void sdkCompletionOnADomainNamesTheExactVersion() throws Exception {
        String serving = pool.serving(ServeFixture.DOMAIN).orElseThrow().toString();
        Completion c = sdk.completions().create(greedy(ServeFixture.DOMAIN, 8));
        assertEquals(serving, c.model());
        Completion pinned = sdk.completions().create(greedy("facts@v2", 8));
        assertEquals("facts@v2", pinned.model());
        assertEquals(direct("facts@v2", 8), pinned.choices().get(0).text());
    }

    @Test
    void sdkStreamedCompletionMatchesTheUnaryOne() throws Exception {
        String whole = sdk.completions().create(greedy("facts@v1", 12)).choices().get(0).text();
        StringBuilder sb = new StringBuilder();
        String finish = null;
        int chunks = 0;
        try (StreamResponse<Completion> s = sdk.completions().createStreaming(greedy("facts@v1", 12))) {
            for (Completion c : (Iterable<Completion>) s.stream()::iterator) {
                assertEquals("facts@v1", c.model());
                sb.append(c.choices().get(0).text());
                if (!c.choices().get(0)._finishReason().isNull() && !c.choices().get(0)._finishReason().isMissing()) {
                    finish = c.choices().get(0).finishReason().asString();
                }
                chunks++;
            }
        }
        assertEquals(whole, sb.toString());
        assertTrue(chunks >= 2, "chunks: " + chunks);
        assertNotNull(finish);
        // the wire format itself
        HttpResponse<String> r = post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"Q:\",\"max_tokens\":4,\"stream\":true,\"temperature\":0}", null);
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("content-type").orElse("").startsWith("text/event-stream"));
        String[] events = r.body().split("\n\n");
        for (String e : events) {
            assertTrue(e.startsWith("data: "), "not an SSE data event: " + e);
        }
        assertEquals("data: [DONE]", events[events.length - 1]);
    }

    @Test
    void sdkChatCompletion() {
        ChatCompletion c = sdk.chat().completions().create(ChatCompletionCreateParams.builder().model("facts@v2")
                .addUserMessage("What is the capital of Velorania?").maxCompletionTokens(8).temperature(0.0).build());
        assertEquals("facts@v2", c.model());
        assertTrue(c.choices().get(0).message().content().isPresent());
    }

    @Test
    void modelsListBaseDomainsAndVersionsVllmStyle() throws Exception {
        Set<String> ids = sdk.models().list().data().stream().map(Model::id).collect(Collectors.toSet());
        assertEquals(Set.of("tiny", "facts", "facts@v1", "facts@v2"), ids);
        JsonNode data = JSON.readTree(get("/v1/models").body()).get("data");
        Map<String, JsonNode> byId = new HashMap<>();
        data.forEach(m -> byId.put(m.get("id").asText(), m));
        assertTrue(byId.get("tiny").get("parent").isNull());
        assertEquals("tiny", byId.get("facts@v1").get("parent").asText());
        assertEquals("facts@v1", byId.get("facts@v1").get("root").asText());
        assertEquals(pool.serving("facts").orElseThrow().toString(), byId.get("facts").get("root").asText());
    }

    @Test
    void adminEndpointsNeedTheTokenAndSwap() throws Exception {
        String body = "{\"version\":\"facts@v2\"}";
        assertEquals(401, post("/v1/adapters/facts/promote", body, null).statusCode());
        HttpResponse<String> wrong = post("/v1/adapters/facts/promote", body, "nope");
        assertEquals(403, wrong.statusCode());
        assertEquals("permission_error", JSON.readTree(wrong.body()).at("/error/type").asText());
        assertEquals(401, post("/v1/adapters/facts/rollback", "{}", null).statusCode());
        try {
            HttpResponse<String> ok = post("/v1/adapters/facts/promote", body, TOKEN);
            assertEquals(200, ok.statusCode(), ok.body());
            assertEquals("facts@v2", sdk.completions().create(greedy("facts", 4)).model());
            assertEquals("facts@v2", fx.registry.alias("facts").orElseThrow().toString());
            JsonNode adapters = JSON.readTree(get("/v1/adapters").body()).at("/domains/0");
            assertEquals("facts@v2", adapters.get("serving").asText());
            assertEquals(2, adapters.get("versions").size());
            assertTrue(adapters.at("/versions/1/scores").has("memorisation"));
            assertEquals(400, post("/v1/adapters/facts/rollback", "{\"version\":\"facts@v2\"}", TOKEN).statusCode());
            assertEquals(404, post("/v1/adapters/facts/promote", "{\"version\":\"facts@v9\"}", TOKEN).statusCode());
        } finally {
            HttpResponse<String> back = post("/v1/adapters/facts/rollback", "{}", TOKEN);
            assertEquals(200, back.statusCode(), back.body());
        }
        assertEquals("facts@v1", sdk.completions().create(greedy("facts", 4)).model());
    }

    @Test
    void clearFourHundredsForBadRequests() throws Exception {
        expectError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"" + "x".repeat(5000) + "\"}", null), 413, "body_too_large");
        expectError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"" + "x".repeat(250) + "\",\"max_tokens\":16}", null), 400, "context_length_exceeded");
        expectError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"Q:\",\"max_tokens\":0}", null), 400, "invalid_max_tokens");
        expectError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"Q:\",\"max_tokens\":100000}", null), 400, "invalid_max_tokens");
        expectError(post("/v1/completions", "{\"model\":\"gpt-9\",\"prompt\":\"Q:\"}", null), 404, "model_not_found");
        expectError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":", null), 400, "invalid_json");
        expectError(post("/v1/chat/completions", "{\"model\":\"tiny\"}", null), 400, null);
        assertThrows(NotFoundException.class, () -> sdk.completions().create(greedy("facts@v7", 4)));
    }

    @Test
    void promotionsUnderSdkLoadDropNothing() throws Exception {
        java.util.Map<String, String> reference = new HashMap<>();
        for (String v : List.of("facts@v1", "facts@v2")) {
            reference.put(v, sdk.completions().create(greedy(v, 6)).choices().get(0).text());
        }
        assertEquals(2, new java.util.HashSet<>(reference.values()).size(), "versions must answer differently");
        List<ServingPoolTest.Swap> swaps = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
        swaps.add(new ServingPoolTest.Swap(Long.MIN_VALUE, Long.MIN_VALUE, pool.serving("facts").orElseThrow()));
        java.util.concurrent.Semaphore answered = new java.util.concurrent.Semaphore(0);
        java.util.concurrent.ExecutorService clients = java.util.concurrent.Executors.newFixedThreadPool(3);
        List<java.util.concurrent.Future<?>> fs = new java.util.ArrayList<>();
        List<String[]> seen = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
        for (int c = 0; c < 3; c++) {
            fs.add(clients.submit(() -> {
                for (int i = 0; i < 8; i++) {
                    long t0 = System.nanoTime();
                    Completion r = sdk.completions().create(greedy("facts", 6));
                    seen.add(new String[] {r.model(), r.choices().get(0).text(), String.valueOf(t0), String.valueOf(System.nanoTime())});
                    answered.release();
                }
                return null;
            }));
        }
        int done = 0;
        int k = 0;
        while (done + 3 <= 24) {
            answered.acquire(3);
            done += 3;
            String v = k++ % 2 == 0 ? "facts@v2" : "facts@v1";
            long s0 = System.nanoTime();
            HttpResponse<String> r = post("/v1/adapters/facts/promote", "{\"version\":\"" + v + "\"}", TOKEN);
            swaps.add(new ServingPoolTest.Swap(s0, System.nanoTime(), dev.morastream.actors.registry.AdapterVersion.parse(v)));
            assertEquals(200, r.statusCode(), r.body());
        }
        for (var f : fs) {
            f.get(60, TimeUnit.SECONDS); // an SDK exception (any failed request) fails here
        }
        clients.shutdown();
        assertEquals(24, seen.size());
        java.util.Set<String> versions = new java.util.HashSet<>();
        for (String[] a : seen) {
            versions.add(a[0]);
            assertEquals(reference.get(a[0]), a[1], "text not made by " + a[0]);
            assertTrue(ServingPoolTest.liveDuring(swaps, a[0], Long.parseLong(a[2]), Long.parseLong(a[3])), a[0] + " was not live");
        }
        assertEquals(2, versions.size(), "both versions should have answered: " + versions);
        assertEquals(200, post("/v1/adapters/facts/promote", "{\"version\":\"facts@v1\"}", TOKEN).statusCode());
    }

    @Test
    void fullQueueAnswers429AtOnce() throws Exception {
        try (ServingPool small = new ServingPool(fx.model, fx.tokenizer, "tiny", fx.registry, new ServingPool.Options(1, 1, 1), metrics.registry());
                HttpApi smallApi = new HttpApi(small, metrics, HttpApi.Settings.defaults())) {
            ServerBinding b = smallApi.bind(system, "127.0.0.1", 0).toCompletableFuture().get(20, TimeUnit.SECONDS);
            try {
                java.util.concurrent.CountDownLatch started = new java.util.concurrent.CountDownLatch(1);
                java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
                GenerationConfig cfg = GenerationConfig.greedy(8).withStopOnEos(false);
                var running = small.submit("tiny", ServeFixture.PROMPT, cfg, s -> {
                    started.countDown();
                    try {
                        release.await();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                });
                try {
                    assertTrue(started.await(20, TimeUnit.SECONDS));
                    var queued = small.submit("tiny", ServeFixture.PROMPT, cfg, (java.util.function.Consumer<String>) null);
                    HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + b.localAddress().getPort() + "/v1/completions"))
                            .timeout(Duration.ofSeconds(10)).header("Content-Type", "application/json")
                            .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"tiny\",\"prompt\":\"Q:\"}")).build(),
                            HttpResponse.BodyHandlers.ofString());
                    expectError(r, 429, "overloaded");
                    release.countDown();
                    queued.get(30, TimeUnit.SECONDS);
                } finally {
                    release.countDown();
                    running.get(30, TimeUnit.SECONDS);
                }
            } finally {
                b.unbind().toCompletableFuture().get(10, TimeUnit.SECONDS);
            }
        }
    }

    static final Pattern SAMPLE = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[^}]*\\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)");

    @Test
    void metricsParseAsPrometheusTextWithTheServingMeters() throws Exception {
        sdk.completions().create(greedy("tiny", 4));
        HttpResponse<String> r = get("/metrics");
        assertEquals(200, r.statusCode());
        Set<String> names = new java.util.HashSet<>();
        for (String line : r.body().split("\n")) {
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            assertTrue(SAMPLE.matcher(line).matches(), "not a Prometheus sample line: " + line);
            names.add(line.replaceAll("[{ ].*", ""));
        }
        for (String n : List.of("mora_serving_requests_total", "mora_serving_time_to_first_token_seconds_count",
                "mora_serving_time_per_output_token_seconds_count", "mora_serving_request_latency_seconds_bucket",
                "mora_serving_queue_depth", "mora_serving_tokens_total", "jvm_memory_used_bytes", "process_cpu_usage")) {
            assertTrue(names.contains(n), "missing " + n);
        }
        assertTrue(r.body().contains("adapter_version=\"tiny\""));
    }

    @Test
    void healthLiveAndReady() throws Exception {
        assertEquals(200, get("/health/live").statusCode());
        assertEquals(200, get("/health/ready").statusCode());
        assertTrue(pool.ready());
        assertFalse(get("/nope").statusCode() < 400);
    }

    static void expectError(HttpResponse<String> r, int status, String code) throws Exception {
        assertEquals(status, r.statusCode(), r.body());
        JsonNode e = JSON.readTree(r.body()).get("error");
        assertNotNull(e, r.body());
        assertFalse(e.get("message").asText().isEmpty());
        assertFalse(e.get("type").asText().isEmpty());
        if (code != null) {
            assertEquals(code, e.get("code").asText(), r.body());
        }
    }

    static HttpResponse<String> get(String path) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(30)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> post(String path, String body, String token) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        if (token != null) {
            b.header("Authorization", "Bearer " + token);
        }
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }
}
