package dev.morastream.ops.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.supervisor.AuditLog;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.GenerationResult;
import dev.morastream.ops.metrics.Metrics;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
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
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.ClassicActorSystemProvider;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.http.javadsl.model.ContentTypes;
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
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;

/**
 * The HTTP API on Pekko HTTP: OpenAI-compatible completions and chat completions (JSON or
 * server-sent events), the model list, health, Prometheus metrics and the adapter admin endpoints.
 * Every completion names the version that produced it: {@code model} is the base name or the exact
 * {@code domain@vN}, repeated in {@code adapter_version}, {@code system_fingerprint} and the header
 * {@code x-mora-adapter-version}. Refusals are {@code {"error": {"message", "type", "code"}}}.
 */
public final class HttpApi extends AllDirectives implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    static final String VERSION_HEADER = "x-mora-adapter-version";
    /** Decisions of the audit log that {@code GET /v1/adapters} shows (the latest). */
    static final int AUDIT_LINES = 200;

    /**
     * @param adminToken bearer token of the admin endpoints; {@code null} or empty disables them (403)
     * @param maxBodyBytes largest request body (413 above)
     * @param maxTokens largest {@code max_tokens} a request may ask for
     */
    public record Settings(String adminToken, long maxBodyBytes, int maxTokens) {
        public Settings {
            if (maxBodyBytes < 1 || maxTokens < 1) {
                throw new IllegalArgumentException("maxBodyBytes and maxTokens must be >= 1");
            }
        }

        /** No admin token, 1 MiB bodies, 256 new tokens. */
        public static Settings defaults() {
            return new Settings(null, 1 << 20, 256);
        }

        public Settings withAdminToken(String token) {
            return new Settings(token, maxBodyBytes, maxTokens);
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
        this.pool = pool;
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

    /** Binds the routes on {@code host:port} (0 for a free port). */
    public CompletionStage<ServerBinding> bind(ClassicActorSystemProvider system, String host, int port) {
        return Http.get(system).newServerAt(host, port).bind(routes());
    }

    public Route routes() {
        return concat(
                path(PathMatchers.segment("v1").slash("completions"), () -> post(() -> jsonBody(b -> completion(b, false)))),
                path(PathMatchers.segment("v1").slash("chat").slash("completions"), () -> post(() -> jsonBody(b -> completion(b, true)))),
                path(PathMatchers.segment("v1").slash("models"), () -> get(() -> guard(this::models))),
                path(PathMatchers.segment("v1").slash("adapters"), () -> get(() -> guard(this::adapters))),
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
                        "no route for " + p + " (or wrong method)")))));
    }

    // ---- completions ----

    /** A parsed and checked completion request. */
    private record Ask(String model, String prompt, GenerationConfig cfg, boolean stream, boolean chat, boolean usageInStream) {}

    private Route completion(JsonNode b, boolean chat) {
        Ask ask = parse(b, chat);
        if (pool.describe(ask.model()).isEmpty()) {
            throw new ApiError(404, "invalid_request_error", "model_not_found", "The model '" + ask.model()
                    + "' does not exist; GET /v1/models lists the base model, every domain and every adapter version");
        }
        return ask.stream() ? stream(ask) : unary(ask);
    }

    private Ask parse(JsonNode b, boolean chat) {
        String model = text(b, "model", true);
        String prompt;
        if (chat) {
            JsonNode msgs = b.get("messages");
            if (msgs == null || !msgs.isArray() || msgs.isEmpty()) {
                throw ApiError.badRequest("'messages' must be a non-empty array of {role, content}");
            }
            StringBuilder sb = new StringBuilder();
            for (JsonNode m : msgs) {
                String role = text(m, "role", true);
                String content = content(m.get("content"));
                sb.append(switch (role) {
                    case "system", "developer" -> "System: ";
                    case "user" -> "User: ";
                    case "assistant" -> "Assistant: ";
                    default -> throw ApiError.badRequest("unknown message role '" + role + "'");
                }).append(content).append('\n');
            }
            prompt = sb.append("Assistant:").toString();
        } else {
            JsonNode p = b.get("prompt");
            if (p != null && p.isArray() && p.size() == 1 && p.get(0).isTextual()) {
                p = p.get(0);
            }
            if (p == null || !p.isTextual()) {
                throw ApiError.badRequest("'prompt' must be a string");
            }
            prompt = p.asText();
        }
        if (b.hasNonNull("n") && b.get("n").asInt() != 1) {
            throw ApiError.badRequest("only n = 1 is supported");
        }
        JsonNode mt = b.hasNonNull("max_tokens") ? b.get("max_tokens") : b.get("max_completion_tokens");
        int maxTokens = 16;
        if (mt != null && !mt.isNull()) {
            if (!mt.canConvertToInt() || !mt.isIntegralNumber() || mt.asInt() < 1 || mt.asInt() > settings.maxTokens()) {
                throw new ApiError(400, "invalid_request_error", "invalid_max_tokens",
                        "'max_tokens' must be an integer in [1, " + settings.maxTokens() + "], got " + mt);
            }
            maxTokens = mt.asInt();
        }
        double temperature = number(b, "temperature", 1.0, 0, 2);
        double topP = number(b, "top_p", 1.0, 0, 1);
        if (topP <= 0) {
            throw ApiError.badRequest("'top_p' must be in (0, 1]");
        }
        long seed = ThreadLocalRandom.current().nextLong();
        if (b.hasNonNull("seed")) {
            if (!b.get("seed").isIntegralNumber()) {
                throw ApiError.badRequest("'seed' must be an integer");
            }
            seed = b.get("seed").asLong();
        }
        List<String> stops = new ArrayList<>();
        JsonNode st = b.get("stop");
        if (st != null && st.isTextual()) {
            stops.add(st.asText());
        } else if (st != null && st.isArray()) {
            st.forEach(x -> stops.add(x.asText()));
        } else if (st != null && !st.isNull()) {
            throw ApiError.badRequest("'stop' must be a string or an array of strings");
        }
        if (stops.size() > 4 || stops.stream().anyMatch(String::isEmpty)) {
            throw ApiError.badRequest("'stop' takes at most 4 non-empty strings");
        }
        if (chat) {
            stops.add("\nUser:");
        }
        int context = pool.model().config().maxPositionEmbeddings();
        int promptTokens = pool.tokenizer().encodeFramed(prompt, false).length;
        if (promptTokens + maxTokens > context) {
            throw new ApiError(400, "invalid_request_error", "context_length_exceeded",
                    "This model's maximum context length is " + context + " tokens. However, you requested "
                            + (promptTokens + maxTokens) + " tokens (" + promptTokens + " in the prompt, " + maxTokens
                            + " in the completion). Please reduce the prompt or max_tokens.");
        }
        boolean stream = b.path("stream").asBoolean(false);
        boolean usage = b.path("stream_options").path("include_usage").asBoolean(false);
        return new Ask(model, prompt, new GenerationConfig(maxTokens, temperature, topP, seed, stops, true), stream, chat, usage);
    }

    private Route unary(Ask ask) {
        CompletableFuture<Served> f = submit(ask, new ServingPool.Listener() {});
        String id = (ask.chat() ? "chatcmpl-" : "cmpl-") + UUID.randomUUID();
        long created = System.currentTimeMillis() / 1000;
        return completeWithFuture(f.handle((s, err) -> {
            if (err != null) {
                return error(failure(err));
            }
            GenerationResult r = s.result();
            ObjectNode o = header(id, ask.chat() ? "chat.completion" : "text_completion", created, s.servedBy());
            ObjectNode c = o.putArray("choices").addObject();
            c.put("index", 0);
            if (ask.chat()) {
                ObjectNode m = c.putObject("message");
                m.put("role", "assistant");
                m.put("content", r.text());
                m.putNull("refusal");
            } else {
                c.put("text", r.text());
            }
            c.putNull("logprobs");
            c.put("finish_reason", r.finishReason());
            usage(o, r);
            return json(200, o).addHeader(RawHeader.create(VERSION_HEADER, s.servedBy()));
        }));
    }

    private Route stream(Ask ask) {
        return extractMaterializer(mat -> {
            Pair<BoundedSourceQueue<ByteString>, Source<ByteString, NotUsed>> q =
                    Source.<ByteString>queue(ask.cfg().maxNewTokens() + 16).preMaterialize(mat);
            BoundedSourceQueue<ByteString> out = q.first();
            String id = (ask.chat() ? "chatcmpl-" : "cmpl-") + UUID.randomUUID();
            String object = ask.chat() ? "chat.completion.chunk" : "text_completion";
            long created = System.currentTimeMillis() / 1000;
            String[] servedBy = {ask.model()};
            ServingPool.Listener listener = new ServingPool.Listener() {
                @Override
                public void onStart(String by) {
                    servedBy[0] = by;
                    if (ask.chat()) {
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
                f = submit(ask, listener);
            } catch (ApiError e) {
                out.complete();
                return complete(error(e));
            }
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
                        if (ask.usageInStream()) {
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
        });
    }

    private CompletableFuture<Served> submit(Ask ask, ServingPool.Listener listener) {
        try {
            return pool.submit(ask.model(), ask.prompt(), ask.cfg(), listener);
        } catch (ServingPool.Overloaded e) {
            throw new ApiError(429, "rate_limit_error", "overloaded", e.getMessage());
        } catch (ServingPool.UnknownModel e) {
            throw new ApiError(404, "invalid_request_error", "model_not_found", e.getMessage());
        }
    }

    private ObjectNode chunk(Ask ask, String id, String object, long created, String by, String delta, String finish, boolean role) {
        ObjectNode o = header(id, object, created, by);
        ObjectNode c = o.putArray("choices").addObject();
        c.put("index", 0);
        if (ask.chat()) {
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
            return new ApiError(404, "invalid_request_error", "model_not_found", t.getMessage());
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

    private Route adapters() {
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
                        e.info().forEach(in::put);
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
            tail.records().forEach(audit::add);
            o.put("audit_lines_skipped", tail.skipped());
        } catch (IOException e) {
            o.put("audit_error", "cannot read the audit log: " + e.getMessage());
        }
        return complete(json(200, o));
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
            if (token == null || token.isEmpty() || !MessageDigest.isEqual(token.getBytes(StandardCharsets.UTF_8),
                    h.get().substring("Bearer ".length()).strip().getBytes(StandardCharsets.UTF_8))) {
                return complete(error(new ApiError(403, "permission_error", "bad_token",
                        token == null || token.isEmpty() ? "admin endpoints are disabled (no admin token configured)" : "wrong admin token")));
            }
            return inner.get();
        });
    }

    // ---- plumbing ----

    /** Reads the whole body (at most {@code maxBodyBytes}) as a JSON object. */
    private Route jsonBody(Function<JsonNode, Route> inner) {
        return extractRequest(req -> extractMaterializer(mat -> {
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

    private static String text(JsonNode n, String field, boolean required) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            if (required) {
                throw ApiError.badRequest("'" + field + "' is required");
            }
            return null;
        }
        if (!v.isTextual()) {
            throw ApiError.badRequest("'" + field + "' must be a string");
        }
        return v.asText();
    }

    private static String content(JsonNode c) {
        if (c != null && c.isTextual()) {
            return c.asText();
        }
        if (c != null && c.isArray()) {
            StringBuilder sb = new StringBuilder();
            for (JsonNode part : c) {
                if (!"text".equals(part.path("type").asText())) {
                    throw ApiError.badRequest("only text content parts are supported");
                }
                sb.append(part.path("text").asText());
            }
            return sb.toString();
        }
        throw ApiError.badRequest("message 'content' must be a string or an array of text parts");
    }

    private static double number(JsonNode b, String field, double dflt, double lo, double hi) {
        JsonNode v = b.get(field);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isNumber() || v.asDouble() < lo || v.asDouble() > hi) {
            throw ApiError.badRequest("'" + field + "' must be a number in [" + lo + ", " + hi + "], got " + v);
        }
        return v.asDouble();
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
