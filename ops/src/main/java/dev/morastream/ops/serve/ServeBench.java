package dev.morastream.ops.serve;

import dev.morastream.actors.serving.ServingPool;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.llama.LlamaModel;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

/**
 * Serving throughput through the real HTTP server ({@link Server} + {@link HttpApi}, in process,
 * on a free port) with concurrent streaming clients ({@code java.net.http}): K random adapter
 * versions (MoRA r=8, sharing: a domain's versions share their spec) of one domain in a temporary {@link AdapterRegistry}, each
 * client asking the versions in turn by exact name, so that a batch mixes K versions. Measured
 * per concurrency level from the SSE streams: requests and output tokens per second, time to
 * first token, inter-token latency; then, with the clients streaming from the domain's alias, the
 * time from a promotion (registry alias + pool swap of a version never served before) to the
 * first token served by the new version.
 */
public final class ServeBench {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String DOMAIN = "bench";
    private static final List<String> PROMPTS = List.of(
            "Once upon a time, there was a",
            "Q: What is the capital of France?\nA:",
            "The history of the river begins",
            "Q: Who wrote the letter, and why?\nA:");

    private ServeBench() {}

    /**
     * @param model base model directory
     * @param concurrency the larger level (the run measures 1 and this)
     * @param adapters adapter versions the requests of a level spread over
     * @param maxTokens max_tokens of each request
     * @param requestsPerClient requests each client sends per level
     */
    public record Options(Path model, int concurrency, int adapters, int maxTokens, int requestsPerClient) {
        public Options {
            if (concurrency < 1 || adapters < 1 || maxTokens < 1 || requestsPerClient < 1) {
                throw new IllegalArgumentException("concurrency, adapters, max tokens and requests must be >= 1");
            }
        }
    }

    /** One level; field names as the issue gives them. */
    public record Result(int concurrency, int adapters, double requests_per_s, double output_tokens_per_s, double ttft_p50_ms,
            double ttft_p99_ms, double itl_p50_ms, double swap_ms) {}

    /** What one streamed request saw. */
    private record Seen(long sentNanos, long firstTextNanos, List<Long> gapsNanos, int completionTokens, String servedBy,
            long firstTextOfVersionNanos) {}

    /** Runs the levels 1 and {@code concurrency} (once when equal) against one server. */
    public static List<Result> run(Options o) throws Exception {
        Path dir = Files.createTempDirectory("mora-serve-bench-");
        try {
            List<AdapterVersion> versions = publish(o, dir);
            AdapterRegistry reg = new AdapterRegistry(dir.resolve("registry"), versions.size() + 1);
            reg.setAlias(versions.get(0));
            int levels = o.concurrency() == 1 ? 1 : 2;
            // one row more than the clients: the promotion's probe request joins at once (see swap)
            ServingPool.Options pool = new ServingPool.Options(o.concurrency() + 1, 4 * o.concurrency() + 16, versions.size());
            List<Result> out = new ArrayList<>();
            try (Server server = Server.start(new Server.Config(o.model(), reg.root(), versions.size() + 1, "127.0.0.1", 0, pool,
                    HttpApi.Settings.defaults()))) {
                server.warm().get(120, TimeUnit.SECONDS);
                HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                        .connectTimeout(Duration.ofSeconds(10)).build();
                URI uri = URI.create("http://127.0.0.1:" + server.port() + "/v1/completions");
                List<AdapterVersion> served = versions.subList(0, o.adapters());
                level(http, uri, served, o, 1); // warm-up: every version loaded, JIT warm
                for (int l = 0; l < levels; l++) {
                    int c = l == 0 ? 1 : o.concurrency();
                    Result r = level(http, uri, served, o, c);
                    AdapterVersion next = versions.get(o.adapters() + l); // never served before: the swap loads it
                    double swap = swap(http, uri, server, reg, next, o, c);
                    out.add(new Result(r.concurrency(), r.adapters(), r.requests_per_s(), r.output_tokens_per_s(), r.ttft_p50_ms(),
                            r.ttft_p99_ms(), r.itl_p50_ms(), swap));
                }
            }
            return out;
        } finally {
            try (Stream<Path> paths = Files.walk(dir)) {
                paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    /** K served versions plus one per level to promote; random nonzero MoRA updates of one spec. */
    private static List<AdapterVersion> publish(Options o, Path dir) throws IOException {
        AdapterRegistry reg = new AdapterRegistry(dir.resolve("registry"), o.adapters() + 3);
        List<AdapterVersion> out = new ArrayList<>();
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.load(o.model(), root)) {
            String base = o.model().toAbsolutePath().normalize().getFileName().toString();
            for (int i = 0; i < o.adapters() + 2; i++) {
                AdapterSpec spec = AdapterSpec.mora(8, MoraVariant.SHARING);
                Path a = dir.resolve("adapter" + i);
                try (AdapterSet set = AdapterSet.create(model, spec.withSeed(i)).randomize(1000 + i, 0.01)) {
                    AdapterFiles.save(set, a, base);
                }
                out.add(reg.publish(DOMAIN, a, Map.of(), Map.of("bench", "serve")).version());
            }
        }
        return out;
    }

    private static Result level(HttpClient http, URI uri, List<AdapterVersion> versions, Options o, int c) throws Exception {
        ExecutorService clients = Executors.newFixedThreadPool(c);
        try {
            List<Future<List<Seen>>> fs = new ArrayList<>();
            long t0 = System.nanoTime();
            for (int i = 0; i < c; i++) {
                final int client = i;
                fs.add(clients.submit(() -> {
                    List<Seen> seen = new ArrayList<>();
                    for (int j = 0; j < o.requestsPerClient(); j++) {
                        String model = versions.get((client + j) % versions.size()).toString();
                        seen.add(stream(http, uri, model, PROMPTS.get((client + j) % PROMPTS.size()), o.maxTokens(), null));
                    }
                    return seen;
                }));
            }
            List<Seen> all = new ArrayList<>();
            for (Future<List<Seen>> f : fs) {
                all.addAll(f.get(30, TimeUnit.MINUTES));
            }
            double wall = (System.nanoTime() - t0) / 1e9;
            long tokens = all.stream().mapToLong(Seen::completionTokens).sum();
            List<Long> ttft = new ArrayList<>();
            List<Long> gaps = new ArrayList<>();
            for (Seen s : all) {
                if (s.firstTextNanos() > 0) {
                    ttft.add(s.firstTextNanos() - s.sentNanos());
                }
                gaps.addAll(s.gapsNanos());
            }
            return new Result(c, versions.size(), all.size() / wall, tokens / wall, ms(percentile(ttft, 0.5)), ms(percentile(ttft, 0.99)),
                    ms(percentile(gaps, 0.5)), Double.NaN);
        } finally {
            clients.shutdownNow();
        }
    }

    /**
     * With {@code c} clients streaming from the domain's alias, promotes {@code next} (registry
     * alias, then pool swap, as {@code POST /v1/adapters/{domain}/promote} does), sends one probe
     * request to the alias at once, and returns the milliseconds from the pool swap's start (the
     * version's load from disk included; the registry's durable write before it not) to the first
     * text served by {@code next} (the probe's, or a client's if one came first). The probe
     * has a free row (the pool has one more than the clients), so this is load + alias move +
     * join + prefill + first token, not the wait for a busy row.
     */
    private static double swap(HttpClient http, URI uri, Server server, AdapterRegistry reg, AdapterVersion next, Options o, int c)
            throws Exception {
        ExecutorService clients = Executors.newFixedThreadPool(c);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong firstNew = new AtomicLong();
        List<Long> answered = Collections.synchronizedList(new ArrayList<>());
        try {
            List<Future<?>> fs = new ArrayList<>();
            for (int i = 0; i < c; i++) {
                final int client = i;
                fs.add(clients.submit(() -> {
                    int j = 0;
                    while (!stop.get()) {
                        Seen s = stream(http, uri, DOMAIN, PROMPTS.get((client + j++) % PROMPTS.size()), o.maxTokens(), next.toString());
                        answered.add(s.sentNanos());
                        if (s.firstTextOfVersionNanos() > 0) {
                            firstNew.accumulateAndGet(s.firstTextOfVersionNanos(), (a, b) -> a == 0 ? b : Math.min(a, b));
                        }
                    }
                    return null;
                }));
            }
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (answered.size() < c && System.nanoTime() < until) { // every client has been answered once: steady state
                Thread.sleep(5);
            }
            reg.setAlias(next); // the registry's durable write comes first, as in POST .../promote
            long promotedAt = System.nanoTime();
            server.pool().swap(next); // loads the version, then moves the alias
            Seen probe = stream(http, uri, DOMAIN, PROMPTS.get(0), o.maxTokens(), next.toString());
            if (probe.firstTextOfVersionNanos() > 0) {
                firstNew.accumulateAndGet(probe.firstTextOfVersionNanos(), (a, b) -> a == 0 ? b : Math.min(a, b));
            }
            stop.set(true);
            for (Future<?> f : fs) {
                f.get(5, TimeUnit.MINUTES);
            }
            return firstNew.get() == 0 ? Double.NaN : ms(firstNew.get() - promotedAt);
        } finally {
            stop.set(true);
            clients.shutdownNow();
        }
    }

    /**
     * One streamed completion.
     *
     * @param watch a version whose first text to time, or {@code null}
     */
    private static Seen stream(HttpClient http, URI uri, String model, String prompt, int maxTokens, String watch) throws Exception {
        ObjectNode body = JSON.createObjectNode();
        body.put("model", model);
        body.put("prompt", prompt);
        body.put("max_tokens", maxTokens);
        body.put("temperature", 0);
        body.put("stream", true);
        body.putObject("stream_options").put("include_usage", true);
        HttpRequest req = HttpRequest.newBuilder(uri).timeout(Duration.ofMinutes(5)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body.toString())).build();
        long sent = System.nanoTime();
        HttpResponse<Stream<String>> resp = http.send(req, HttpResponse.BodyHandlers.ofLines());
        if (resp.statusCode() != 200) {
            String text = String.join("\n", resp.body().toList());
            throw new IOException("HTTP " + resp.statusCode() + " from " + uri + ": " + text);
        }
        long first = 0;
        long last = 0;
        long firstOfVersion = 0;
        int tokens = 0;
        String by = null;
        List<Long> gaps = new ArrayList<>();
        try (Stream<String> lines = resp.body()) {
            Iterator<String> it = lines.iterator();
            while (it.hasNext()) {
                String line = it.next();
                if (!line.startsWith("data: ") || line.equals("data: [DONE]")) {
                    continue;
                }
                long now = System.nanoTime();
                JsonNode ev = JSON.readTree(line.substring(6));
                if (ev.has("error")) {
                    throw new IOException("stream error: " + ev.get("error"));
                }
                by = ev.path("model").asText(by);
                if (ev.has("usage") && !ev.get("usage").isNull()) {
                    tokens = ev.get("usage").path("completion_tokens").asInt();
                }
                JsonNode ch = ev.path("choices");
                if (ch.size() > 0 && !ch.get(0).path("text").asText("").isEmpty()) {
                    if (first == 0) {
                        first = now;
                        if (by != null && by.equals(watch)) {
                            firstOfVersion = now;
                        }
                    } else {
                        gaps.add(now - last);
                    }
                    last = now;
                }
            }
        }
        return new Seen(sent, first, gaps, tokens, by, firstOfVersion);
    }

    private static long percentile(List<Long> xs, double q) {
        if (xs.isEmpty()) {
            return -1;
        }
        List<Long> s = new ArrayList<>(xs);
        Collections.sort(s);
        int i = (int) Math.ceil(q * s.size()) - 1;
        return s.get(Math.max(0, Math.min(s.size() - 1, i)));
    }

    private static double ms(long nanos) {
        return nanos < 0 ? Double.NaN : Math.round(nanos / 1e4) / 100.0;
    }
}
