package dev.morastream.ops.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.supervisor.AuditLog;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.GenerationResult;
import dev.morastream.models.generate.Generator;
import dev.morastream.models.generate.TokenLogprob;
import dev.morastream.ops.metrics.Metrics;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.UUID;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.ClassicActorSystemProvider;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.http.javadsl.model.AttributeKey;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpRequest;
import org.apache.pekko.http.scaladsl.model.EntityStreamSizeException;
import org.apache.pekko.http.javadsl.model.HttpEntities;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.MediaTypes;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.model.headers.RawHeader;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.stream.BoundedSourceQueue;
import org.apache.pekko.stream.QueueOfferResult;
import org.apache.pekko.stream.javadsl.Flow;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;

/**
 * The HTTP API on Pekko HTTP: OpenAI-compatible completions and chat completions (JSON or
 * server-sent events), the model list, health, Prometheus metrics and the adapter admin endpoints.
 * Every completion names the version that produced it: {@code model} is the base name or the exact
 * {@code domain@vN}, repeated in {@code adapter_version}, {@code system_fingerprint} and the header
 * {@code x-mora-adapter-version}. Refusals are {@code {"error": {"message", "type", "param", "code"}}}.
 *
 * <p>Strict: POST bodies must be {@code application/json} (415), one JSON object without duplicate
 * keys or trailing tokens; parameters are checked by {@link CompletionRequest} (type-strict, unknown
 * and unimplemented ones named in a 400). Completions carry {@code logprobs}, {@code echo},
 * {@code n}, {@code best_of} and {@code usage}; chat renders the model's {@link ChatTemplate}. A
 * non-streaming request is cancelled (its queue place and worker freed) when its connection closes
 * or {@link Settings#requestTimeout} passes. Optional API key on {@code /v1}, optional {@code Host}
 * allow-list; {@code GET /v1/adapters} shows file paths only to the admin token.
 */
public final class HttpApi extends AllDirectives implements AutoCloseable {
    /** Strict: duplicate keys and anything after the top-level value are errors. */
    private static final ObjectMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();
    /** The connection a request came on (to cancel its generations when it closes). */
    private static final AttributeKey<Connection> CONNECTION = AttributeKey.create("mora-connection", Connection.class);
    static final String VERSION_HEADER = "x-mora-adapter-version";
    /** Decisions of the audit log that {@code GET /v1/adapters} shows (the latest). */
    static final int AUDIT_LINES = 200;

    /**
     * @param adminToken bearer token of the admin endpoints; {@code null} or empty disables them (403)
     * @param maxBodyBytes largest request body (413 above)
     * @param maxTokens largest {@code max_tokens} a request may ask for
     * @param apiKey bearer token every {@code /v1} endpoint needs (the admin token works too);
     *     {@code null} or empty: no key needed
     * @param maxN largest {@code n} and {@code best_of}
     * @param allowedHosts host names (no port) a request's {@code Host} header may name; empty: any
     * @param requestTimeout a non-streaming completion still unanswered after this gets 503 and its
     *     generation is cancelled
     */
    public record Settings(String adminToken, long maxBodyBytes, int maxTokens, String apiKey, int maxN, List<String> allowedHosts,
                           Duration requestTimeout) {
        public Settings {
            if (maxBodyBytes < 1 || maxTokens < 1 || maxN < 1) {
                throw new IllegalArgumentException("maxBodyBytes, maxTokens and maxN must be >= 1");
            }
            allowedHosts = allowedHosts.stream().map(h -> h.strip().toLowerCase(java.util.Locale.ROOT)).filter(h -> !h.isEmpty()).toList();
            if (requestTimeout.isNegative() || requestTimeout.isZero()) {
                throw new IllegalArgumentException("requestTimeout must be positive");
            }
        }

        /** No API key, n up to 4, any host, 300 s request timeout. */
        public Settings(String adminToken, long maxBodyBytes, int maxTokens) {
            this(adminToken, maxBodyBytes, maxTokens, null, 4, List.of(), Duration.ofSeconds(300));
        }

        /** No admin token, 1 MiB bodies, 256 new tokens. */
        public static Settings defaults() {
            return new Settings(null, 1 << 20, 256);
        }

        public Settings withAdminToken(String token) {
            return new Settings(token, maxBodyBytes, maxTokens, apiKey, maxN, allowedHosts, requestTimeout);
        }

        public Settings withApiKey(String key) {
            return new Settings(adminToken, maxBodyBytes, maxTokens, key, maxN, allowedHosts, requestTimeout);
        }

        public Settings withMaxN(int n) {
            return new Settings(adminToken, maxBodyBytes, maxTokens, apiKey, n, allowedHosts, requestTimeout);
        }

        public Settings withAllowedHosts(List<String> hosts) {
            return new Settings(adminToken, maxBodyBytes, maxTokens, apiKey, maxN, hosts, requestTimeout);
        }

        public Settings withRequestTimeout(Duration timeout) {
            return new Settings(adminToken, maxBodyBytes, maxTokens, apiKey, maxN, allowedHosts, timeout);
        }
    }

    /**
     * How promote and rollback move a domain's alias. The default moves the registry's alias and
     * swaps the pool; the main job goes through its promotion supervisor instead (audit log,
     * listeners, the promotions topic).
     */
    public interface AliasMover {
        /**
         * Makes {@code target} the version its domain serves (validated: it exists in the registry).
         *
         * @param cause {@code promote} or {@code rollback}
         * @return completes when new requests get {@code target}
         */
        CompletionStage<Void> move(AdapterVersion target, String cause);
    }

    private final ServingPool pool;
    private final Metrics metrics;
    private final Settings settings;
    private final AliasMover mover;
    private final Path auditLog;
    private final ChatTemplate template;
    private final ExecutorService admin = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "mora-http-admin");
        t.setDaemon(true);
        return t;
    });

    public HttpApi(ServingPool pool, Metrics metrics, Settings settings) {
        this(pool, metrics, settings, null, null);
    }

    /**
     * @param mover how promote/rollback move an alias ({@code null}: the registry's alias, then the pool)
     * @param auditLog the promotion audit log (JSONL) that {@code GET /v1/adapters} shows, or {@code null}
     */
    public HttpApi(ServingPool pool, Metrics metrics, Settings settings, AliasMover mover, Path auditLog) {
        this(pool, metrics, settings, mover, auditLog, ChatTemplate.fixed());
    }

    /** @param template how chat messages become a prompt ({@link ChatTemplate#forModel} of the base model's directory) */
    public HttpApi(ServingPool pool, Metrics metrics, Settings settings, AliasMover mover, Path auditLog, ChatTemplate template) {
        this.pool = pool;
        this.template = template;
        this.metrics = metrics;
        this.settings = settings;
        this.auditLog = auditLog;
        // runs on the admin thread that called it (which waits for the returned stage)
        this.mover = mover != null ? mover : (target, cause) -> {
            try {
                pool.registry().orElseThrow().setAlias(target);
                pool.swap(target);
                return CompletableFuture.completedFuture(null);
            } catch (IOException | RuntimeException e) {
                return CompletableFuture.failedFuture(e);
            }
        };
    }

    /**
     * Binds the routes on {@code host:port} (0 for a free port). Each connection carries a
     * {@link Connection}: when it closes (the client went away), the generations of its pending
     * requests are cancelled and their slots freed.
     */
    public CompletionStage<ServerBinding> bind(ClassicActorSystemProvider system, String host, int port) {
        Flow<HttpRequest, HttpResponse, NotUsed> routeFlow = routes().flow(system);
        Flow<HttpRequest, HttpResponse, NotUsed> perConnection = Flow.fromMaterializer((mat, attrs) -> {
            Connection c = new Connection();
            // the request side ends when the client closes the connection, even with a response
            // still pending (the response side would only end after it): watch that side
            return Flow.of(HttpRequest.class).map(r -> r.addAttribute(CONNECTION, c))
                    .watchTermination((nu, done) -> {
                        done.whenComplete((d, e) -> c.close());
                        return nu;
                    })
                    .via(routeFlow);
        }).mapMaterializedValue(x -> NotUsed.getInstance());
        return Http.get(system).newServerAt(host, port).bindFlow(perConnection);
    }

    public Route routes() {
        return hostAllowed(() -> concat(
                path(PathMatchers.segment("v1").slash("completions"), () -> post(() -> apiKey(() -> jsonBody(b -> completion(b, false))))),
                path(PathMatchers.segment("v1").slash("chat").slash("completions"), () -> post(() -> apiKey(() -> jsonBody(b -> completion(b, true))))),
                path(PathMatchers.segment("v1").slash("models"), () -> get(() -> apiKey(() -> guard(this::models)))),
                path(PathMatchers.segment("v1").slash("adapters"), () -> get(() -> apiKey(() -> isAdmin(a -> guard(() -> adapters(a)))))),
                path(PathMatchers.segment("v1").slash("adapters").slash(PathMatchers.segment()).slash("promote"),
                        domain -> post(() -> admin(() -> jsonBody(b -> move(domain, b, false))))),
                path(PathMatchers.segment("v1").slash("adapters").slash(PathMatchers.segment()).slash("rollback"),
                        domain -> post(() -> admin(() -> jsonBody(b -> move(domain, b, true))))),
                path(PathMatchers.segment("health").slash("live"), () -> get(() -> complete(json(200, JSON.createObjectNode().put("status", "live"))))),
                path(PathMatchers.segment("health").slash("ready"), () -> get(() -> complete(pool.ready()
                        ? json(200, JSON.createObjectNode().put("status", "ready"))
                        : json(503, JSON.createObjectNode().put("status", "starting"))))),
                path("metrics", () -> get(() -> complete(HttpResponse.create()
                        .withEntity(ContentTypes.TEXT_PLAIN_UTF8, metrics.scrape())))),
                extractUnmatchedPath(p -> complete(error(new ApiError(404, "invalid_request_error", "not_found",
                        "no route for " + p + " (or wrong method)"))))));
    }

    /** The pending generations of one connection; closing it cancels them. */
    static final class Connection {
        private final java.util.Set<CompletableFuture<?>> pending = java.util.concurrent.ConcurrentHashMap.newKeySet();
        private volatile boolean closed;

        void add(CompletableFuture<?> f) {
            pending.add(f);
            f.whenComplete((x, e) -> pending.remove(f));
            if (closed) {
                f.cancel(false);
            }
        }

        void close() {
            closed = true;
            pending.forEach(f -> f.cancel(false));
        }
    }

    // ---- completions ----

    private Route completion(JsonNode b, boolean chat) {
        CompletionRequest ask = CompletionRequest.parse(b, chat, settings.maxTokens(), settings.maxN(), pool.tokenizer(), template,
                pool.model().config().maxPositionEmbeddings());
        Optional<String> resolved = pool.describe(ask.model);
        if (resolved.isEmpty()) {
            throw new ApiError(404, "invalid_request_error", "model_not_found", "The model '" + ask.model
                    + "' does not exist; GET /v1/models lists the base model, every domain and every adapter version", "model");
        }
        return ask.stream ? stream(ask) : unary(ask, resolved.get());
    }

    /** One generation of a request: which prompt, which candidate. */
    private record Job(int prompt, int candidate, CompletableFuture<Served> served) {}

    /**
     * Every prompt × {@code best_of} candidates as separate pool requests (with seeds {@code seed + c});
     * several candidates run on the exact version the alias named at submission, so a swap cannot mix
     * versions within one answer.
     */
    private Route unary(CompletionRequest ask, String resolved) {
        int top = Math.max(0, ask.logprobs);
        Generator.Scoring scoring = new Generator.Scoring(top, ask.echo, () -> false);
        int total = ask.prompts.size() * ask.bestOf;
        String modelName = total > 1 ? resolved : ask.model;
        List<Job> jobs = new ArrayList<>();
        try {
            for (int p = 0; p < ask.prompts.size(); p++) {
                for (int c = 0; c < ask.bestOf; c++) {
                    jobs.add(new Job(p, c, submit(modelName, ask.prompts.get(p).ids(), ask.cfg.withSeed(ask.cfg.seed() + c), scoring,
                            new ServingPool.Listener() {})));
                }
            }
        } catch (ApiError e) {
            jobs.forEach(j -> j.served().cancel(false));
            throw e;
        }
        CompletableFuture<?>[] all = jobs.stream().map(Job::served).toArray(CompletableFuture[]::new);
        String id = (ask.chat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID();
        long created = System.currentTimeMillis() / 1000;
        java.util.concurrent.atomic.AtomicBoolean timedOut = new java.util.concurrent.atomic.AtomicBoolean();
        Supplier<HttpResponse> timeout = () -> error(new ApiError(503, "server_error", "timeout", "the request took longer than "
                + settings.requestTimeout().toMillis() / 1000.0 + " s (morastream.http.request-timeout); its generation was cancelled"));
        CompletableFuture<HttpResponse> answer = CompletableFuture.allOf(all).handle((v, err) -> {
            if (timedOut.get()) {
                return timeout.get();
            }
            if (err != null) {
                jobs.forEach(j -> j.served().cancel(false));
                return error(failure(err));
            }
            try {
                return answer(ask, id, created, jobs);
            } catch (RuntimeException e) {
                return error(new ApiError(500, "server_error", null, "building the answer failed: " + e));
            }
        });
        return extractRequest(req -> {
            req.getAttribute(CONNECTION).ifPresent(c -> jobs.forEach(j -> c.add(j.served())));
            return withRequestTimeout(settings.requestTimeout(), r -> {
                timedOut.set(true);
                jobs.forEach(j -> j.served().cancel(false));
                return timeout.get();
            }, () -> completeWithFuture(answer));
        });
    }

    private HttpResponse answer(CompletionRequest ask, String id, long created, List<Job> jobs) {
        String servedBy = jobs.get(0).served().join().servedBy();
        ObjectNode o = header(id, ask.chat ? "chat.completion" : "text_completion", created, servedBy);
        ArrayNode choices = o.putArray("choices");
        long promptTokens = 0;
        long completionTokens = 0;
        int index = 0;
        for (int p = 0; p < ask.prompts.size(); p++) {
            final int pi = p;
            List<Served> cands = jobs.stream().filter(j -> j.prompt() == pi).map(j -> j.served().join()).toList();
            promptTokens += cands.get(0).result().promptTokens();
            for (Served s : cands) {
                completionTokens += s.result().completionTokens();
            }
            List<Served> chosen = cands;
            if (ask.bestOf > ask.n) { // the n candidates of highest mean logprob, in candidate order on ties
                chosen = cands.stream().sorted(java.util.Comparator.comparingDouble((Served s) -> -s.result().meanLogprob()))
                        .limit(ask.n).toList();
            }
            for (Served s : chosen) {
                choices.add(choice(ask, ask.prompts.get(p), s.result(), index++));
            }
        }
        ObjectNode u = o.putObject("usage");
        u.put("prompt_tokens", promptTokens);
        u.put("completion_tokens", completionTokens);
        u.put("total_tokens", promptTokens + completionTokens);
        return json(200, o).addHeader(RawHeader.create(VERSION_HEADER, servedBy));
    }

    private ObjectNode choice(CompletionRequest ask, CompletionRequest.Prompt prompt, GenerationResult r, int index) {
        ObjectNode c = JSON.createObjectNode();
        c.put("index", index);
        if (ask.chat) {
            ObjectNode m = c.putObject("message");
            m.put("role", "assistant");
            m.put("content", r.text());
            m.putNull("refusal");
            if (ask.logprobs >= 0) {
                c.putObject("logprobs").set("content", chatLogprobs(r));
            } else {
                c.putNull("logprobs");
            }
        } else {
            c.put("text", ask.echo ? prompt.text() + r.text() : r.text());
            if (ask.logprobs >= 0) {
                c.set("logprobs", completionLogprobs(ask, prompt, r));
            } else {
                c.putNull("logprobs");
            }
        }
        c.put("finish_reason", r.finishReason());
        return c;
    }

    /**
     * {@code {tokens, token_logprobs, top_logprobs, text_offset}} of the completions API: with echo
     * the prompt's tokens first (the very first has null logprob and top), offsets into the choice's text.
     */
    private ObjectNode completionLogprobs(CompletionRequest ask, CompletionRequest.Prompt prompt, GenerationResult r) {
        List<TokenLogprob> lps = new ArrayList<>();
        if (ask.echo) {
            lps.addAll(r.promptLogprobs());
        }
        lps.addAll(r.logprobs());
        int[] ids = lps.stream().mapToInt(TokenLogprob::id).toArray();
        List<String> pieces = pieces(ids);
        ObjectNode o = JSON.createObjectNode();
        ArrayNode tokens = o.putArray("tokens");
        ArrayNode tl = o.putArray("token_logprobs");
        ArrayNode top = o.putArray("top_logprobs");
        ArrayNode off = o.putArray("text_offset");
        int offset = 0;
        for (int i = 0; i < lps.size(); i++) {
            TokenLogprob t = lps.get(i);
            tokens.add(pieces.get(i));
            off.add(offset);
            offset += pieces.get(i).length();
            if (!t.scored()) {
                tl.addNull();
                top.addNull();
                continue;
            }
            tl.add(t.logprob());
            ObjectNode alt = top.addObject();
            for (int k = 0; k < t.topIds().length; k++) {
                String tok = pool.tokenizer().decode(new int[] {t.topIds()[k]});
                if (!alt.has(tok)) {
                    alt.put(tok, t.topLogprobs()[k]);
                }
            }
        }
        return o;
    }

    /** {@code choices[].logprobs.content} of the chat API. */
    private ArrayNode chatLogprobs(GenerationResult r) {
        int[] ids = r.logprobs().stream().mapToInt(TokenLogprob::id).toArray();
        List<String> pieces = pieces(ids);
        ArrayNode content = JSON.createArrayNode();
        for (int i = 0; i < ids.length; i++) {
            TokenLogprob t = r.logprobs().get(i);
            ObjectNode e = tokenEntry(content.addObject(), pieces.get(i), t.logprob());
            ArrayNode top = e.putArray("top_logprobs");
            for (int k = 0; k < t.topIds().length; k++) {
                tokenEntry(top.addObject(), pool.tokenizer().decode(new int[] {t.topIds()[k]}), t.topLogprobs()[k]);
            }
        }
        return content;
    }

    private static ObjectNode tokenEntry(ObjectNode e, String token, double logprob) {
        e.put("token", token);
        e.put("logprob", logprob);
        ArrayNode bytes = e.putArray("bytes");
        for (byte x : token.getBytes(StandardCharsets.UTF_8)) {
            bytes.add(x & 0xff);
        }
        return e;
    }

    /**
     * The text each id adds to the decoded sequence, so that the pieces concatenate to the decoded
     * text; a token that ends inside a multi-byte character adds nothing until one completes it.
     */
    private List<String> pieces(int[] ids) {
        List<String> out = new ArrayList<>(ids.length);
        String prev = "";
        for (int i = 0; i < ids.length; i++) {
            String cur = pool.tokenizer().decode(Arrays.copyOf(ids, i + 1));
            if (i < ids.length - 1) {
                int end = cur.length();
                while (end > 0 && cur.charAt(end - 1) == '\uFFFD') {
                    end--;
                }
                cur = cur.substring(0, end);
            }
            if (cur.startsWith(prev)) {
                out.add(cur.substring(prev.length()));
                prev = cur;
            } else {
                out.add(pool.tokenizer().decode(new int[] {ids[i]}));
                prev = cur;
            }
        }
        return out;
    }

    private Route stream(CompletionRequest ask) {
        return extractMaterializer(mat -> extractRequest(req -> {
            Pair<BoundedSourceQueue<ByteString>, Source<ByteString, NotUsed>> q =
                    Source.<ByteString>queue(ask.cfg.maxNewTokens() + 16).preMaterialize(mat);
            BoundedSourceQueue<ByteString> out = q.first();
            String id = (ask.chat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID();
            String object = ask.chat ? "chat.completion.chunk" : "text_completion";
            long created = System.currentTimeMillis() / 1000;
            String[] servedBy = {ask.model};
            ServingPool.Listener listener = new ServingPool.Listener() {
                @Override
                public void onStart(String by) {
                    servedBy[0] = by;
                    if (ask.chat) {
                        send(out, chunk(ask, id, object, created, by, "", null, true));
                    }
                }

                @Override
                public void onText(String delta) {
                    send(out, chunk(ask, id, object, created, servedBy[0], delta, null, false));
                }
            };
            CompletableFuture<Served> f;
            try {
                f = submit(ask.model, ask.prompts.get(0).ids(), ask.cfg, Generator.Scoring.NONE, listener);
            } catch (ApiError e) {
                out.complete();
                return complete(error(e));
            }
            req.getAttribute(CONNECTION).ifPresent(c -> c.add(f));
            f.whenComplete((s, err) -> {
                try {
                    if (err != null) {
                        ApiError e = failure(err);
                        ObjectNode o = JSON.createObjectNode();
                        o.putObject("error").put("message", e.getMessage()).put("type", e.type);
                        send(out, o);
                    } else {
                        ObjectNode last = chunk(ask, id, object, created, s.servedBy(), "", s.result().finishReason(), false);
                        send(out, last);
                        if (ask.usageInStream) {
                            ObjectNode u = header(id, object, created, s.servedBy());
                            u.putArray("choices");
                            usage(u, s.result());
                            send(out, u);
                        }
                    }
                    out.offer(ByteString.fromString("data: [DONE]\n\n"));
                } catch (CancellationException gone) {
                    // the client went away
                } finally {
                    out.complete();
                }
            });
            return complete(HttpResponse.create()
                    .withEntity(HttpEntities.createChunked(MediaTypes.TEXT_EVENT_STREAM.toContentType(), q.second()))
                    .addHeader(RawHeader.create("Cache-Control", "no-cache")));
        }));
    }

    private CompletableFuture<Served> submit(String model, int[] ids, GenerationConfig cfg, Generator.Scoring scoring,
            ServingPool.Listener listener) {
        try {
            return pool.submit(model, ids, cfg, scoring, listener);
        } catch (ServingPool.Overloaded e) {
            throw new ApiError(429, "rate_limit_error", "overloaded", e.getMessage());
        } catch (ServingPool.UnknownModel e) {
            throw new ApiError(404, "invalid_request_error", "model_not_found", e.getMessage(), "model");
        }
    }

    private ObjectNode chunk(CompletionRequest ask, String id, String object, long created, String by, String delta, String finish, boolean role) {
        ObjectNode o = header(id, object, created, by);
        ObjectNode c = o.putArray("choices").addObject();
        c.put("index", 0);
        if (ask.chat) {
            ObjectNode d = c.putObject("delta");
            if (role) {
                d.put("role", "assistant");
            }
            d.put("content", delta);
        } else {
            c.put("text", delta);
        }
        c.putNull("logprobs");
        if (finish == null) {
            c.putNull("finish_reason");
        } else {
            c.put("finish_reason", finish);
        }
        return o;
    }

    /** Queues one SSE event; throws {@link CancellationException} (aborting the generation) when the client is gone. */
    private static void send(BoundedSourceQueue<ByteString> out, ObjectNode event) {
        QueueOfferResult r = out.offer(ByteString.fromString("data: " + event + "\n\n"));
        if (r != QueueOfferResult.enqueued()) {
            throw new CancellationException("stream closed: " + r);
        }
    }

    private static ObjectNode header(String id, String object, long created, String servedBy) {
        ObjectNode o = JSON.createObjectNode();
        o.put("id", id);
        o.put("object", object);
        o.put("created", created);
        o.put("model", servedBy);
        o.put("system_fingerprint", "mora-" + servedBy);
        o.put("adapter_version", servedBy);
        return o;
    }

    private static void usage(ObjectNode o, GenerationResult r) {
        ObjectNode u = o.putObject("usage");
        u.put("prompt_tokens", r.promptTokens());
        u.put("completion_tokens", r.completionTokens());
        u.put("total_tokens", r.promptTokens() + r.completionTokens());
    }

    private static ApiError failure(Throwable err) {
        Throwable t = err instanceof CompletionException && err.getCause() != null ? err.getCause() : err;
        if (t instanceof ApiError e) {
            return e;
        }
        if (t instanceof ServingPool.UnknownModel) {
            return new ApiError(404, "invalid_request_error", "model_not_found", t.getMessage(), "model");
        }
        if (t instanceof CancellationException) {
            return new ApiError(503, "server_error", "cancelled", "the generation was cancelled");
        }
        if (t instanceof IllegalArgumentException) {
            return ApiError.badRequest(t.getMessage());
        }
        return new ApiError(500, "server_error", null, "generation failed: " + t);
    }

    // ---- models and adapters ----

    private Route models() {
        long created = System.currentTimeMillis() / 1000;
        int ctx = pool.model().config().maxPositionEmbeddings();
        ObjectNode o = JSON.createObjectNode();
        o.put("object", "list");
        ArrayNode data = o.putArray("data");
        model(data, pool.baseName(), pool.baseName(), null, created, ctx);
        Optional<AdapterRegistry> reg = pool.registry();
        if (reg.isPresent()) {
            try {
                for (String d : reg.get().domains()) {
                    Optional<AdapterVersion> serving = pool.serving(d);
                    serving.ifPresent(v -> model(data, d, v.toString(), pool.baseName(), created, ctx).put("adapter_version", v.toString()));
                    for (AdapterRegistry.Entry e : reg.get().versions(d)) {
                        model(data, e.version().toString(), e.version().toString(), pool.baseName(), e.created().getEpochSecond(), ctx)
                                .put("adapter_version", e.version().toString());
                    }
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return complete(json(200, o));
    }

    private static ObjectNode model(ArrayNode data, String id, String root, String parent, long created, int ctx) {
        ObjectNode m = data.addObject();
        m.put("id", id);
        m.put("object", "model");
        m.put("created", created);
        m.put("owned_by", "morastream");
        m.put("root", root);
        if (parent == null) {
            m.putNull("parent");
        } else {
            m.put("parent", parent);
        }
        m.put("max_model_len", ctx);
        return m;
    }

    /**
     * Registry, aliases and audit; file paths (a version's directory, path-valued info and audit
     * fields) only for the admin token.
     */
    private Route adapters(boolean admin) {
        ObjectNode o = JSON.createObjectNode();
        o.put("base", pool.baseName());
        ArrayNode ds = o.putArray("domains");
        Optional<AdapterRegistry> reg = pool.registry();
        if (reg.isPresent()) {
            try {
                for (String d : reg.get().domains()) {
                    ObjectNode dn = ds.addObject();
                    dn.put("domain", d);
                    Optional<AdapterVersion> alias = reg.get().alias(d);
                    dn.put("alias", alias.map(AdapterVersion::toString).orElse(null));
                    dn.put("serving", pool.serving(d).map(AdapterVersion::toString).orElse(null));
                    ArrayNode vs = dn.putArray("versions");
                    for (AdapterRegistry.Entry e : reg.get().versions(d)) {
                        ObjectNode v = vs.addObject();
                        v.put("version", e.version().toString());
                        v.put("created", e.created().toString());
                        ObjectNode sc = v.putObject("scores");
                        e.scores().forEach(sc::put);
                        ObjectNode in = v.putObject("info");
                        e.info().forEach((key, val) -> {
                            if (admin || !isPath(val)) {
                                in.put(key, val);
                            }
                        });
                        if (admin) {
                            v.put("dir", e.dir().toString());
                        }
                    }
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        ArrayNode audit = o.putArray("audit");
        try {
            // torn or corrupt lines are skipped (and counted), never a 500
            AuditLog.Tail tail = AuditLog.tail(auditLog, AUDIT_LINES);
            tail.records().forEach(entry -> audit.add(admin ? entry : withoutPaths(entry)));
            o.put("audit_lines_skipped", tail.skipped());
        } catch (IOException e) {
            o.put("audit_error", "cannot read the audit log: " + e.getMessage());
        }
        return complete(json(200, o));
    }

    /** Whether a string names a file: an absolute path. */
    static boolean isPath(String v) {
        return v != null && (v.startsWith("/") || v.matches("^[A-Za-z]:[\\\\/].*") || v.startsWith("file:"));
    }

    /** A copy of {@code n} without string fields that are paths. */
    private static JsonNode withoutPaths(JsonNode n) {
        if (n.isObject()) {
            ObjectNode o = JSON.createObjectNode();
            n.fields().forEachRemaining(e -> {
                if (!(e.getValue().isTextual() && isPath(e.getValue().asText()))) {
                    o.set(e.getKey(), withoutPaths(e.getValue()));
                }
            });
            return o;
        }
        if (n.isArray()) {
            ArrayNode a = JSON.createArrayNode();
            n.forEach(x -> {
                if (!(x.isTextual() && isPath(x.asText()))) {
                    a.add(withoutPaths(x));
                }
            });
            return a;
        }
        return n;
    }

    /** Promote (or roll back to) a version: the registry's alias moves, then the pool swaps. */
    private Route move(String domain, JsonNode b, boolean rollback) {
        AdapterRegistry reg = pool.registry().orElseThrow(() -> new ApiError(404, "invalid_request_error", null, "this server has no adapter registry"));
        String name = b.hasNonNull("version") ? b.get("version").asText() : null;
        CompletableFuture<HttpResponse> done = CompletableFuture.supplyAsync(() -> {
            try {
                AdapterVersion.checkDomain(domain);
                Optional<AdapterVersion> current = pool.serving(domain);
                AdapterVersion target;
                if (name != null) {
                    target = AdapterVersion.parse(name);
                } else if (rollback) {
                    target = current.flatMap(c -> {
                        try {
                            return reg.versions(domain).stream().map(AdapterRegistry.Entry::version)
                                    .filter(v -> v.compareTo(c) < 0).reduce((x, y) -> y);
                        } catch (IOException e) {
                            throw new UncheckedIOException(e);
                        }
                    }).orElseThrow(() -> ApiError.badRequest("no earlier version of " + domain + " to roll back to"));
                } else {
                    throw ApiError.badRequest("give {\"version\": \"" + domain + "@vN\"}");
                }
                if (!target.domain().equals(domain)) {
                    throw ApiError.badRequest(target + " is not a version of " + domain);
                }
                if (reg.get(target).isEmpty()) {
                    throw new ApiError(404, "invalid_request_error", "version_not_found", "no adapter version " + target);
                }
                if (rollback && current.isPresent() && target.compareTo(current.get()) >= 0) {
                    throw ApiError.badRequest("rollback goes to a version older than " + current.get() + "; use promote");
                }
                mover.move(target, rollback ? "rollback" : "promote").toCompletableFuture().get(60, TimeUnit.SECONDS);
                ObjectNode o = JSON.createObjectNode();
                o.put("domain", domain);
                o.put("previous", current.map(AdapterVersion::toString).orElse(null));
                o.put("serving", pool.serving(domain).map(AdapterVersion::toString).orElse(null));
                return json(200, o);
            } catch (ApiError e) {
                return error(e);
            } catch (IllegalArgumentException e) {
                return error(ApiError.badRequest(e.getMessage()));
            } catch (IOException | UncheckedIOException e) {
                return error(new ApiError(500, "server_error", null, e.toString()));
            } catch (ExecutionException | TimeoutException e) {
                return error(new ApiError(500, "server_error", null, "moving the alias failed: " + (e.getCause() != null ? e.getCause() : e)));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return error(new ApiError(503, "server_error", null, "interrupted"));
            }
        }, admin);
        return completeWithFuture(done);
    }

    private Route admin(Supplier<Route> inner) {
        return optionalHeaderValueByName("Authorization", h -> {
            if (h.isEmpty() || !h.get().startsWith("Bearer ")) {
                return complete(error(new ApiError(401, "authentication_error", "missing_token",
                        "admin endpoints need 'Authorization: Bearer <token>'")));
            }
            String token = settings.adminToken();
            if (token == null || token.isEmpty() || !matches(token, h)) {
                return complete(error(new ApiError(403, "permission_error", "bad_token",
                        token == null || token.isEmpty() ? "admin endpoints are disabled (no admin token configured)" : "wrong admin token")));
            }
            return inner.get();
        });
    }

    /** Whether the request carries the admin token. */
    private Route isAdmin(Function<Boolean, Route> inner) {
        return optionalHeaderValueByName("Authorization", h -> {
            String token = settings.adminToken();
            return inner.apply(token != null && !token.isEmpty() && matches(token, h));
        });
    }

    /** The API key of the {@code /v1} endpoints, when one is configured (the admin token also passes). 401 otherwise. */
    private Route apiKey(Supplier<Route> inner) {
        String key = settings.apiKey();
        if (key == null || key.isEmpty()) {
            return inner.get();
        }
        return optionalHeaderValueByName("Authorization", h -> {
            if (h.isEmpty() || !h.get().startsWith("Bearer ")) {
                return complete(error(new ApiError(401, "invalid_request_error", "invalid_api_key",
                        "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (morastream.http.api-key).")));
            }
            String admin = settings.adminToken();
            if (!matches(key, h) && !(admin != null && !admin.isEmpty() && matches(admin, h))) {
                return complete(error(new ApiError(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")));
            }
            return inner.get();
        });
    }

    private static boolean matches(String secret, Optional<String> authorization) {
        if (authorization.isEmpty() || !authorization.get().startsWith("Bearer ")) {
            return false;
        }
        return MessageDigest.isEqual(secret.getBytes(StandardCharsets.UTF_8),
                authorization.get().substring("Bearer ".length()).strip().getBytes(StandardCharsets.UTF_8));
    }

    /** The {@code Host} allow-list (DNS rebinding): a host not on a non-empty list gets 400. */
    private Route hostAllowed(Supplier<Route> inner) {
        if (settings.allowedHosts().isEmpty()) {
            return inner.get();
        }
        return extractRequest(req -> {
            String host = req.getUri().host().address().toLowerCase(java.util.Locale.ROOT);
            Optional<org.apache.pekko.http.javadsl.model.headers.Host> h = req.getHeader(org.apache.pekko.http.javadsl.model.headers.Host.class);
            if (h.isPresent()) {
                host = h.get().host().address().toLowerCase(java.util.Locale.ROOT);
            }
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            }
            if (!settings.allowedHosts().contains(host)) {
                return complete(error(new ApiError(400, "invalid_request_error", "host_not_allowed", "Host '" + host
                        + "' is not allowed (morastream.http.allowed-hosts: " + String.join(", ", settings.allowedHosts()) + ")")));
            }
            return inner.get();
        });
    }

    // ---- plumbing ----

    /** Reads the whole body (at most {@code maxBodyBytes}) as a JSON object. */
    private Route jsonBody(Function<JsonNode, Route> inner) {
        return extractRequest(req -> extractMaterializer(mat -> {
            if (!req.entity().getContentType().mediaType().equals(MediaTypes.APPLICATION_JSON)) {
                return complete(error(new ApiError(415, "invalid_request_error", "unsupported_media_type",
                        "the body must be sent as 'Content-Type: application/json', not '" + req.entity().getContentType() + "'")));
            }
            OptionalLong len = req.entity().getContentLengthOption();
            if (len.isPresent() && len.getAsLong() > settings.maxBodyBytes()) {
                return complete(error(tooLarge()));
            }
            return onComplete(req.entity().toStrict(10_000, settings.maxBodyBytes(), mat), t -> {
                if (t.isFailure()) {
                    Throwable e = t.failed().get();
                    return complete(error(e instanceof EntityStreamSizeException || e.getCause() instanceof EntityStreamSizeException
                            ? tooLarge() : ApiError.badRequest("cannot read the body: " + e.getMessage())));
                }
                JsonNode n;
                try {
                    n = JSON.readTree(t.get().getData().toArray());
                } catch (IOException e) {
                    return complete(error(new ApiError(400, "invalid_request_error", "invalid_json",
                            "malformed JSON: " + (e instanceof JsonProcessingException j ? j.getOriginalMessage() : e.getMessage()))));
                }
                if (n == null || !n.isObject()) {
                    return complete(error(new ApiError(400, "invalid_request_error", "invalid_json", "the body must be a JSON object")));
                }
                return guard(() -> inner.apply(n));
            });
        }));
    }

    private ApiError tooLarge() {
        return new ApiError(413, "invalid_request_error", "body_too_large", "request body larger than " + settings.maxBodyBytes() + " bytes");
    }

    private Route guard(Supplier<Route> r) {
        try {
            return r.get();
        } catch (ApiError e) {
            return complete(error(e));
        } catch (RuntimeException e) {
            return complete(error(new ApiError(500, "server_error", null, e.toString())));
        }
    }

    private static HttpResponse json(int status, ObjectNode body) {
        return HttpResponse.create().withStatus(StatusCodes.get(status))
                .withEntity(ContentTypes.APPLICATION_JSON, body.toString().getBytes(StandardCharsets.UTF_8));
    }

    static HttpResponse error(ApiError e) {
        ObjectNode o = JSON.createObjectNode();
        ObjectNode er = o.putObject("error");
        er.put("message", e.getMessage());
        er.put("type", e.type);
        if (e.param == null) {
            er.putNull("param");
        } else {
            er.put("param", e.param);
        }
        if (e.code == null) {
            er.putNull("code");
        } else {
            er.put("code", e.code);
        }
        return json(e.status, o);
    }

    @Override
    public void close() {
        admin.shutdownNow();
    }
}
