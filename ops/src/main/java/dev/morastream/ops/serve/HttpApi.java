package dev.morastream.ops.serve;

import dev.morastream.actors.serving.ServingPool;
import static dev.morastream.ops.serve.Responses.error;
import static dev.morastream.ops.serve.Responses.json;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.ops.metrics.Metrics;
import dev.morastream.ops.serve.openai.OpenAiJson;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.ClassicActorSystemProvider;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.http.javadsl.model.AttributeKey;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpRequest;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.MediaTypes;
import org.apache.pekko.http.javadsl.model.headers.Host;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;
import org.apache.pekko.http.scaladsl.model.EntityStreamSizeException;
import org.apache.pekko.stream.javadsl.Flow;

/**
 * The HTTP API on Pekko HTTP: OpenAI-compatible completions and chat completions (JSON or
 * server-sent events), the model list, health, Prometheus metrics and the adapter admin endpoints.
 * Every completion names the version that produced it: {@code model} is the base name or the exact
 * {@code domain@vN}, repeated in {@code adapter_version}, {@code system_fingerprint} and the header
 * {@code x-mora-adapter-version}. Refusals are {@code {"error": {"message", "type", "param", "code"}}}.
 *
 * <p>This class composes the routes, guards them (optional {@code Host} allow-list, optional API key
 * on {@code /v1}), reads bodies and binds the server. Strict: POST bodies must be
 * {@code application/json} (415), one JSON object without duplicate keys or trailing tokens, at most
 * {@link Settings#maxBodyBytes} (413). The endpoints themselves: {@link OpenAiRoutes} (the protocol
 * records in {@code ops.serve.openai}, checked by {@link CompletionRequest}) and {@link AdminRoutes}.
 * A non-streaming request is cancelled (its queue place and worker freed) when its connection closes
 * or {@link Settings#requestTimeout} passes.
 */
public final class HttpApi extends AllDirectives implements AutoCloseable {
    /** The connection a request came on (to cancel its generations when it closes). */
    static final AttributeKey<Connection> CONNECTION = AttributeKey.create("mora-connection", Connection.class);
    static final String VERSION_HEADER = "x-mora-adapter-version";

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
     * @param serving whether this node answers the {@code /v1} API (its {@code serving} role); a
     *     node without it answers {@code /v1} with 503 and still serves health and metrics
     */
    public record Settings(String adminToken, long maxBodyBytes, int maxTokens, String apiKey, int maxN, List<String> allowedHosts,
                           Duration requestTimeout, boolean serving) {
        public Settings {
            if (maxBodyBytes < 1 || maxTokens < 1 || maxN < 1) {
                throw new IllegalArgumentException("maxBodyBytes, maxTokens and maxN must be >= 1");
            }
            allowedHosts = allowedHosts.stream().map(h -> h.strip().toLowerCase(Locale.ROOT)).filter(h -> !h.isEmpty()).toList();
            if (requestTimeout.isNegative() || requestTimeout.isZero()) {
                throw new IllegalArgumentException("requestTimeout must be positive");
            }
        }

        /** No API key, n up to 4, any host, 300 s request timeout. */
        public Settings(String adminToken, long maxBodyBytes, int maxTokens) {
            this(adminToken, maxBodyBytes, maxTokens, null, 4, List.of(), Duration.ofSeconds(300), true);
        }

        /** No admin token, 1 MiB bodies, 256 new tokens. */
        public static Settings defaults() {
            return new Settings(null, 1 << 20, 256);
        }

        public Settings withAdminToken(String token) {
            return new Settings(token, maxBodyBytes, maxTokens, apiKey, maxN, allowedHosts, requestTimeout, serving);
        }

        public Settings withApiKey(String key) {
            return new Settings(adminToken, maxBodyBytes, maxTokens, key, maxN, allowedHosts, requestTimeout, serving);
        }

        public Settings withMaxN(int n) {
            return new Settings(adminToken, maxBodyBytes, maxTokens, apiKey, n, allowedHosts, requestTimeout, serving);
        }

        public Settings withAllowedHosts(List<String> hosts) {
            return new Settings(adminToken, maxBodyBytes, maxTokens, apiKey, maxN, hosts, requestTimeout, serving);
        }

        /** {@code false}: a node without the serving role ({@code /v1} answers 503). */
        public Settings withServing(boolean on) {
            return new Settings(adminToken, maxBodyBytes, maxTokens, apiKey, maxN, allowedHosts, requestTimeout, on);
        }

        public Settings withRequestTimeout(Duration timeout) {
            return new Settings(adminToken, maxBodyBytes, maxTokens, apiKey, maxN, allowedHosts, timeout, serving);
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

        /**
         * Makes {@code target} a version of this server's registry when it is stored elsewhere (a
         * cluster's state store), before it is validated; {@code false} when it is nowhere.
         */
        default boolean fetch(AdapterVersion target) {
            return false;
        }
    }

    private final ServingPool pool;
    private final Metrics metrics;
    private final Settings settings;
    private final OpenAiRoutes openAi;
    private final AdminRoutes admin;

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
        this.metrics = metrics;
        this.settings = settings;
        this.openAi = new OpenAiRoutes(pool, settings, template);
        this.admin = new AdminRoutes(pool, settings, mover, auditLog);
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
        return hostAllowed(() -> concat(settings.serving() ? reject() : pathPrefix("v1", () -> complete(error(new ApiError(503,
                        "server_error", "no_serving_role", "this node has no serving role (morastream.cluster.roles): ask a serving node")))),
                path(PathMatchers.segment("v1").slash("completions"), () -> post(() -> apiKey(() -> jsonBody(b -> openAi.completion(b, false))))),
                path(PathMatchers.segment("v1").slash("chat").slash("completions"),
                        () -> post(() -> apiKey(() -> jsonBody(b -> openAi.completion(b, true))))),
                path(PathMatchers.segment("v1").slash("models"), () -> get(() -> apiKey(() -> guard(openAi::models)))),
                path(PathMatchers.segment("v1").slash("adapters"), () -> get(() -> apiKey(() -> admin.isAdmin(a -> guard(() -> admin.adapters(a)))))),
                path(PathMatchers.segment("v1").slash("adapters").slash(PathMatchers.segment()).slash("promote"),
                        domain -> post(() -> admin.requireAdmin(() -> jsonBody(b -> admin.move(domain, b, false))))),
                path(PathMatchers.segment("v1").slash("adapters").slash(PathMatchers.segment()).slash("rollback"),
                        domain -> post(() -> admin.requireAdmin(() -> jsonBody(b -> admin.move(domain, b, true))))),
                path(PathMatchers.segment("health").slash("live"), () -> get(() -> complete(json(200, Map.of("status", "live"))))),
                path(PathMatchers.segment("health").slash("ready"), () -> get(() -> complete(pool.ready()
                        ? json(200, Map.of("status", "ready"))
                        : json(503, Map.of("status", "starting"))))),
                path("metrics", () -> get(() -> complete(HttpResponse.create()
                        .withEntity(ContentTypes.TEXT_PLAIN_UTF8, metrics.scrape())))),
                extractUnmatchedPath(p -> complete(error(new ApiError(404, "invalid_request_error", "not_found",
                        "no route for " + p + " (or wrong method)"))))));
    }

    /** The pending generations of one connection; closing it cancels them. */
    static final class Connection {
        private final Set<CompletableFuture<?>> pending = ConcurrentHashMap.newKeySet();
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

    // ---- guards ----

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
            String adminToken = settings.adminToken();
            if (!bearerIs(key, h) && !(adminToken != null && !adminToken.isEmpty() && bearerIs(adminToken, h))) {
                return complete(error(new ApiError(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")));
            }
            return inner.get();
        });
    }

    /** Whether {@code authorization} is {@code Bearer <secret>} (compared in constant time). */
    static boolean bearerIs(String secret, Optional<String> authorization) {
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
            String host = req.getUri().host().address().toLowerCase(Locale.ROOT);
            Optional<Host> h = req.getHeader(Host.class);
            if (h.isPresent()) {
                host = h.get().host().address().toLowerCase(Locale.ROOT);
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
                    n = OpenAiJson.read(t.get().getData().toArray());
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

    @Override
    public void close() {
        admin.close();
    }
}
