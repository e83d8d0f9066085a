package dev.morastream.ops.cli;

import dev.morastream.ops.serve.HttpApi;
import dev.morastream.ops.serve.Server;
import dev.morastream.ops.serve.ServingPool;
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

    @Override
    public Integer call() throws Exception {
        HttpApi.Settings http = new HttpApi.Settings(adminToken, maxBodyBytes, maxTokens).withApiKey(apiKey).withMaxN(maxN)
                .withAllowedHosts(allowedHosts).withRequestTimeout(java.time.Duration.ofSeconds(requestTimeout));
        Server server = Server.start(new Server.Config(modelOptions.dir(), registry, keep, host, port,
                new ServingPool.Options(workers, queue, maxLoaded), http));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
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
}
