package dev.morastream.ops.cli;

import dev.morastream.ops.serve.HttpApi;
import dev.morastream.ops.serve.Server;
import dev.morastream.actors.serving.ServingPool;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Serves the base model and its adapter versions over HTTP until stopped. */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve the base model and its adapter versions over an OpenAI-compatible HTTP API (with /metrics).")
public final class ServeCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;

    @Option(names = "--registry", paramLabel = "DIR", description = "Adapter registry directory (omit to serve the base model only).")
    Path registry;

    @Option(names = "--keep", defaultValue = "10", description = "Versions the registry keeps per domain (default ${DEFAULT-VALUE}).")
    int keep;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--port", defaultValue = "8080", description = "Port (0 = any free one; default ${DEFAULT-VALUE}).")
    int port;

    @Option(names = "--admin-token", paramLabel = "T", defaultValue = "${env:MORA_ADMIN_TOKEN}",
            description = "Bearer token of the promote/rollback endpoints (default: $MORA_ADMIN_TOKEN; none disables them).")
    String adminToken;

    @Option(names = "--workers", defaultValue = "16",
            description = "Concurrent generations: rows decoded together in one batch (default ${DEFAULT-VALUE}).")
    int workers;

    @Option(names = "--queue", defaultValue = "64", description = "Requests that may wait; more get 429 (default ${DEFAULT-VALUE}).")
    int queue;

    @Option(names = "--max-loaded", defaultValue = "4", description = "Adapter versions kept in memory (default ${DEFAULT-VALUE}).")
    int maxLoaded;

    @Option(names = "--max-tokens", defaultValue = "256", description = "Largest max_tokens a request may ask (default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--max-body-bytes", defaultValue = "1048576", description = "Largest request body (default ${DEFAULT-VALUE}).")
    long maxBodyBytes;

    @Option(names = "--api-key", paramLabel = "KEY", defaultValue = "${env:MORA_API_KEY}",
            description = "Bearer key every /v1 endpoint needs, like vLLM's --api-key (default: $MORA_API_KEY; none: open).")
    String apiKey;

    @Option(names = "--max-n", defaultValue = "4", description = "Largest n and best_of a request may ask (default ${DEFAULT-VALUE}).")
    int maxN;

    @Option(names = "--allowed-host", paramLabel = "HOST",
            description = "A Host header name requests may carry (repeat; default: any). Guards against DNS rebinding.")
    java.util.List<String> allowedHosts = new java.util.ArrayList<>();

    @Option(names = "--request-timeout", defaultValue = "300", paramLabel = "SECONDS",
            description = "A non-streaming completion unanswered after this gets 503 and is cancelled (default ${DEFAULT-VALUE}).")
    long requestTimeout;

    @Option(names = "--follow", description = {"Follow a cluster: serve each domain's promoted version as the cluster decides it,",
        "from the promotions topic, fetching versions from the state store into --registry (needs --bootstrap-servers)."})
    boolean follow;

    @Option(names = "--bootstrap-servers", paramLabel = "HOST:PORT", description = "The cluster's Kafka, for --follow.")
    String bootstrapServers;

    @Option(names = "--promotions-topic", defaultValue = "mora.promotions", description = "With --follow (default ${DEFAULT-VALUE}).")
    String promotionsTopic;

    @Option(names = "--state-topic", defaultValue = "mora.state", description = "With --follow (default ${DEFAULT-VALUE}).")
    String stateTopic;

    @Override
    public Integer call() throws Exception {
        if (follow && (bootstrapServers == null || bootstrapServers.isBlank())) {
            throw new picocli.CommandLine.ParameterException(new picocli.CommandLine(this), "--follow needs --bootstrap-servers HOST:PORT");
        }
        if (follow && registry == null) {
            throw new picocli.CommandLine.ParameterException(new picocli.CommandLine(this),
                    "--follow needs --registry DIR: the local copy of the versions it serves");
        }
        HttpApi.Settings http = new HttpApi.Settings(adminToken, maxBodyBytes, maxTokens).withApiKey(apiKey).withMaxN(maxN)
                .withAllowedHosts(allowedHosts).withRequestTimeout(java.time.Duration.ofSeconds(requestTimeout));
        Server server = Server.start(new Server.Config(modelOptions.dir(), registry, keep, host, port,
                new ServingPool.Options(workers, queue, maxLoaded), http));
        AutoCloseable following = follow ? follow(server) : null;
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                if (following != null) {
                    following.close();
                }
                server.close();
            } catch (Exception e) {
                System.err.println("mora serve: shutdown: " + e);
            } finally {
                stopped.countDown();
            }
        }, "mora-serve-shutdown"));
        String url = "http://" + host + ":" + server.port();
        System.out.println("serving " + modelOptions.dir().getFileName() + " on " + url + "/v1 (metrics: " + url + "/metrics)");
        server.warm().whenComplete((v, e) -> System.out.println(e == null ? "ready: " + url + "/health/ready"
                : "warm-up failed, not ready: " + e));
        stopped.await();
        return 0;
    }

    /** Starts following the cluster's promotions; closing it stops the follower and the state store client. */
    private AutoCloseable follow(Server server) {
        java.util.Map<String, Object> client = java.util.Map.of("bootstrap.servers", bootstrapServers);
        dev.morastream.streams.state.StateStore store = dev.morastream.streams.state.KafkaStateStore.open(
                dev.morastream.streams.state.KafkaStateStore.Settings.of(client, stateTopic));
        java.time.format.DateTimeFormatter time = java.time.format.DateTimeFormatter.ofPattern("HH:mm:ss");
        dev.morastream.ops.run.PromotionFollower f = new dev.morastream.ops.run.PromotionFollower(client, promotionsTopic,
                new dev.morastream.actors.registry.RegistryReplica(store), server.pool().registry().orElseThrow(), server.pool(), d -> true,
                line -> System.out.println(java.time.LocalTime.now().format(time) + " " + line), server.meters()).start();
        System.out.println("following the promotions on " + promotionsTopic + " at " + bootstrapServers + " (versions from " + stateTopic + ")");
        return () -> {
            f.close();
            store.close();
        };
    }
}
