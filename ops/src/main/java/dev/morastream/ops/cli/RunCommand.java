package dev.morastream.ops.cli;

import dev.morastream.ops.run.JobConfig;
import dev.morastream.ops.run.MoraJob;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import sun.misc.Signal;

/**
 * The main job: Kafka stream -> MoRA trainers -> evaluator -> promotion -> serving API. Runs until
 * SIGTERM or Ctrl-C, then stops gracefully (drain, final checkpoints, offsets committed) and
 * exits 0; exits 1 after stopping the same way when a trainer gave up (repeated failures).
 */
@Command(name = "run", mixinStandardHelpOptions = true,
        description = {"Run the main job: learn from Kafka, promote better adapters, serve them over HTTP.",
            "With no configuration: an embedded Kafka broker, the shipped tiny model, a demo stream of new facts,",
            "HTTP on 127.0.0.1:8080. Configuration: application.conf keys (morastream.*), overridable by --config FILE,",
            "-D system properties (MORA_JAVA_OPTS) and CONFIG_FORCE_* environment variables.",
            "SIGTERM / Ctrl-C drains the stream, writes final checkpoints, commits offsets and exits 0."})
public final class RunCommand implements Callable<Integer> {
    @Option(names = "--config", paramLabel = "FILE", description = "HOCON file with the keys to change (see application.conf).")
    Path config;

    @Option(names = "--data-dir", paramLabel = "DIR", description = "State directory (morastream.data-dir; default mora-data).")
    Path dataDir;

    @Option(names = "--port", description = "HTTP port (morastream.http.port; 0 = a free one; default 8080).")
    Integer port;

    @Option(names = "--bootstrap-servers", paramLabel = "HOST:PORT",
            description = "External Kafka cluster (morastream.kafka.bootstrap-servers; default: an embedded broker).")
    String bootstrapServers;

    @Option(names = "--model", paramLabel = "DIR", description = "Base model directory (morastream.base-model; default: the shipped tiny model).")
    Path model;

    @Option(names = "--cluster-port", paramLabel = "P",
            description = "Join a Pekko Cluster: this node's artery TCP port (morastream.cluster.port; default 0 = one node, no cluster).")
    Integer clusterPort;

    @Option(names = "--cluster-host", paramLabel = "HOST",
            description = "The address other nodes reach this node on (morastream.cluster.host; default 127.0.0.1).")
    String clusterHost;

    @Option(names = "--seed-nodes", paramLabel = "HOST:PORT", split = ",",
            description = "Nodes to join (morastream.cluster.seed-nodes; none: this node starts the cluster).")
    java.util.List<String> seedNodes;

    @Option(names = "--roles", paramLabel = "ROLE", split = ",",
            description = "trainer and/or serving (morastream.cluster.roles; default both).")
    java.util.List<String> roles;

    @Option(names = "--no-demo", description = "Do not feed the demo stream of facts (morastream.demo.enabled = false).")
    boolean noDemo;

    @Override
    public Integer call() throws Exception {
        Map<String, Object> overrides = new LinkedHashMap<>();
        if (dataDir != null) {
            overrides.put("morastream.data-dir", dataDir.toString());
        }
        if (port != null) {
            overrides.put("morastream.http.port", port);
        }
        if (bootstrapServers != null) {
            overrides.put("morastream.kafka.bootstrap-servers", bootstrapServers);
        }
        if (model != null) {
            overrides.put("morastream.base-model", model.toString());
        }
        if (clusterPort != null) {
            overrides.put("morastream.cluster.port", clusterPort);
        }
        if (clusterHost != null) {
            overrides.put("morastream.cluster.host", clusterHost);
        }
        if (seedNodes != null) {
            overrides.put("morastream.cluster.seed-nodes", seedNodes);
        }
        if (roles != null) {
            overrides.put("morastream.cluster.roles", roles);
        }
        if (noDemo) {
            overrides.put("morastream.demo.enabled", false);
        }
        JobConfig cfg = JobConfig.load(config, overrides, Paths.home());
        CountDownLatch stop = new CountDownLatch(1);
        // SIGTERM and SIGINT stop the job from this thread, which then exits 0 (the JVM's own
        // handler would run shutdown hooks and exit 143)
        for (String sig : new String[] {"TERM", "INT"}) {
            Signal.handle(new Signal(sig), s -> stop.countDown());
        }
        MoraJob job = MoraJob.start(cfg);
        Thread hook = new Thread(() -> {
            try {
                job.close(); // another way out (SIGHUP, System.exit elsewhere): still stop in order
            } catch (Exception e) {
                System.err.println("mora run: shutdown: " + e);
            }
        }, "mora-run-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        String[] failure = {null};
        job.failed().thenAccept(why -> {
            failure[0] = why;
            stop.countDown();
        });
        stop.await();
        job.close();
        if (failure[0] != null) {
            System.err.println("mora run: " + failure[0]);
            return 1;
        }
        return 0;
    }
}
