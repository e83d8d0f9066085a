package dev.morastream.streams.kafka;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import kafka.server.KafkaConfig;
import kafka.server.KafkaRaftServer;
import kafka.tools.StorageTool;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.security.auth.SecurityProtocol;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.utils.AppInfoParser;
import org.apache.kafka.common.utils.Time;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A real single-node Kafka broker (KRaft, combined broker + controller) in this JVM, built from the
 * Maven Central jars only: no Docker, no tarball, no ZooKeeper.
 *
 * <p>Listeners bind to free loopback ports; logs and metadata live under the directory the caller
 * gives, so a run's broker data sits beside the run's other data. Internal topics use replication
 * factor 1 and consumer groups rebalance without the initial delay, which keeps tests fast.
 *
 * <pre>{@code
 * try (EmbeddedKafka kafka = EmbeddedKafka.start(dataDir)) {
 *     kafka.createTopic("texts", 3);
 *     ... kafka.bootstrapServers() ...
 * }
 * }</pre>
 */
public final class EmbeddedKafka implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(EmbeddedKafka.class);
    private static final Duration STARTUP_TIMEOUT = Duration.ofSeconds(60);

    private final KafkaRaftServer server;
    private final String bootstrapServers;
    private final Map<String, String> listeners;
    private final Path dataDir;
    private final Admin admin;
    private boolean closed;

    private EmbeddedKafka(KafkaRaftServer server, String bootstrapServers, Map<String, String> listeners, Path dataDir, Admin admin) {
        this.server = server;
        this.bootstrapServers = bootstrapServers;
        this.listeners = Map.copyOf(listeners);
        this.dataDir = dataDir;
        this.admin = admin;
    }

    /** Formats {@code dataDir} (when it is not formatted yet), starts the broker and waits until it serves. */
    public static EmbeddedKafka start(Path dataDir) {
        return start(dataDir, Map.of());
    }

    /**
     * As {@link #start(Path)}, with broker properties that override the defaults (for example
     * {@code log.retention.ms}).
     */
    public static EmbeddedKafka start(Path dataDir, Map<String, String> overrides) {
        return start(dataDir, overrides, Set.of());
    }

    /**
     * As {@link #start(Path, Map)}, with one more client listener per security protocol in
     * {@code securedListeners} ({@code SASL_PLAINTEXT}, {@code SASL_SSL}, {@code SSL}), each named
     * after its protocol, on its own free loopback port ({@link #bootstrapServers(String)}). The
     * PLAINTEXT listener stays: the broker talks to itself there and {@link #admin()} uses it. The
     * secured listeners are configured with {@code overrides}, for example
     * {@code sasl.enabled.mechanisms=PLAIN} and
     * {@code listener.name.sasl_plaintext.plain.sasl.jaas.config=...PlainLoginModule required user_alice="secret";},
     * or for {@code SSL} the broker's key: {@code listener.name.ssl.ssl.keystore.location},
     * {@code ...keystore.password}, {@code ...key.password} and {@code ...keystore.type}.
     */
    public static EmbeddedKafka start(Path dataDir, Map<String, String> overrides, Set<String> securedListeners) {
        return start(dataDir, 0, overrides, securedListeners);
    }

    /**
     * As {@link #start(Path, Map)}, with the PLAINTEXT (client) listener on {@code 127.0.0.1:port}
     * ({@code 0}: a free port). A taken port fails at once with a message that says so (rather than
     * the broker's own bind error deep in its startup). The controller listener always takes a free
     * port: the single voter's address is only read from the configuration, so a restart on the
     * same data directory may move it.
     */
    public static EmbeddedKafka start(Path dataDir, int port, Map<String, String> overrides) {
        return start(dataDir, port, overrides, Set.of());
    }

    private static EmbeddedKafka start(Path dataDir, int port, Map<String, String> overrides, Set<String> securedListeners) {
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port " + port + " is not a TCP port (0..65535, 0 = any free one)");
        }
        try {
            Files.createDirectories(dataDir);
            Set<Integer> taken = new HashSet<>();
            int brokerPort;
            if (port == 0) {
                brokerPort = freePort(taken);
            } else {
                requireFree(port);
                brokerPort = port;
                taken.add(port);
            }
            int controllerPort = freePort(taken);
            Map<String, String> extra = new LinkedHashMap<>();
            for (String protocol : new TreeSet<>(securedListeners)) {
                SecurityProtocol.forName(protocol); // fails on an unknown protocol
                if (protocol.equals("PLAINTEXT") || protocol.equals("CONTROLLER")) {
                    throw new IllegalArgumentException("listener " + protocol + " is always there");
                }
                extra.put(protocol, "127.0.0.1:" + freePort(taken));
            }
            Path logDir = dataDir.resolve("kraft-logs");
            Properties props = brokerProperties(logDir, brokerPort, controllerPort);
            if (!extra.isEmpty()) {
                StringBuilder listeners = new StringBuilder(props.getProperty("listeners"));
                StringBuilder advertised = new StringBuilder(props.getProperty("advertised.listeners"));
                StringBuilder map = new StringBuilder(props.getProperty("listener.security.protocol.map"));
                extra.forEach((protocol, address) -> {
                    listeners.append(',').append(protocol).append("://").append(address);
                    advertised.append(',').append(protocol).append("://").append(address);
                    map.append(',').append(protocol).append(':').append(protocol);
                });
                props.setProperty("listeners", listeners.toString());
                props.setProperty("advertised.listeners", advertised.toString());
                props.setProperty("listener.security.protocol.map", map.toString());
            }
            overrides.forEach(props::setProperty);
            Path configFile = dataDir.resolve("server.properties");
            try (OutputStream out = Files.newOutputStream(configFile)) {
                props.store(out, "embedded morastream broker");
            }
            if (!Files.exists(logDir.resolve("meta.properties"))) {
                format(configFile);
            }
            KafkaRaftServer server = new KafkaRaftServer(KafkaConfig.fromProps(props, false), Time.SYSTEM);
            server.startup();
            String bootstrap = "127.0.0.1:" + brokerPort;
            Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap));
            Map<String, String> listeners = new LinkedHashMap<>(extra);
            listeners.put("PLAINTEXT", bootstrap);
            EmbeddedKafka kafka = new EmbeddedKafka(server, bootstrap, listeners, dataDir, admin);
            try {
                kafka.awaitReady();
            } catch (RuntimeException e) {
                kafka.close();
                throw e;
            }
            log.info("embedded Kafka {} serving on {} with data in {}", AppInfoParser.getVersion(), listeners, dataDir);
            return kafka;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start an embedded Kafka broker in " + dataDir, e);
        }
    }

    private static Properties brokerProperties(Path logDir, int brokerPort, int controllerPort) {
        Properties p = new Properties();
        p.setProperty("process.roles", "broker,controller");
        p.setProperty("node.id", "1");
        p.setProperty("controller.quorum.voters", "1@127.0.0.1:" + controllerPort);
        p.setProperty("listeners", "PLAINTEXT://127.0.0.1:" + brokerPort + ",CONTROLLER://127.0.0.1:" + controllerPort);
        p.setProperty("advertised.listeners", "PLAINTEXT://127.0.0.1:" + brokerPort);
        p.setProperty("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT");
        p.setProperty("controller.listener.names", "CONTROLLER");
        p.setProperty("inter.broker.listener.name", "PLAINTEXT");
        p.setProperty("log.dirs", logDir.toAbsolutePath().toString());
        p.setProperty("num.partitions", "1");
        p.setProperty("default.replication.factor", "1");
        p.setProperty("offsets.topic.replication.factor", "1");
        p.setProperty("offsets.topic.num.partitions", "3");
        p.setProperty("transaction.state.log.replication.factor", "1");
        p.setProperty("transaction.state.log.min.isr", "1");
        // the default 50 partitions take seconds to create on the first transactional producer
        p.setProperty("transaction.state.log.num.partitions", "3");
        p.setProperty("group.initial.rebalance.delay.ms", "0");
        p.setProperty("auto.create.topics.enable", "false");
        // small segments keep the files a test leaves under target/ small
        p.setProperty("log.segment.bytes", String.valueOf(64 * 1024 * 1024));
        p.setProperty("log.cleaner.enable", "false");
        return p;
    }

    /** {@code kafka-storage format}: returns a code instead of exiting the JVM. */
    private static void format(Path configFile) {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        int code;
        try (PrintStream out = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
            String[] args = {"format", "-t", Uuid.randomUuid().toString(), "-c", configFile.toString(), "--ignore-formatted"};
            try {
                code = StorageTool.execute(args, out);
            } catch (Exception e) {
                throw new IllegalStateException("kafka storage format failed: " + buf.toString(StandardCharsets.UTF_8), e);
            }
        }
        if (code != 0) {
            throw new IllegalStateException("kafka storage format exited " + code + ": " + buf.toString(StandardCharsets.UTF_8));
        }
    }

    private void awaitReady() {
        Instant deadline = Instant.now().plus(STARTUP_TIMEOUT);
        Exception last = null;
        while (Instant.now().isBefore(deadline)) {
            try {
                int nodes = admin.describeCluster().nodes().get(5, TimeUnit.SECONDS).size();
                if (nodes > 0) {
                    return;
                }
            } catch (ExecutionException | TimeoutException e) {
                last = e;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for the embedded broker", e);
            }
        }
        throw new IllegalStateException("embedded broker did not serve within " + STARTUP_TIMEOUT, last);
    }

    /** Fails with a clear message when something listens on {@code 127.0.0.1:port} already. */
    private static void requireFree(int port) {
        try (ServerSocket s = new ServerSocket()) {
            s.setReuseAddress(true);
            s.bind(new java.net.InetSocketAddress(InetAddress.getLoopbackAddress(), port), 1);
        } catch (IOException e) {
            throw new IllegalStateException("port " + port + " on " + InetAddress.getLoopbackAddress().getHostAddress()
                    + " is taken (another broker or program listens there): choose another port, or 0 for any free one", e);
        }
    }

    /** A free loopback port not in {@code taken} (added to it). */
    private static int freePort(Set<Integer> taken) throws IOException {
        while (true) {
            try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
                s.setReuseAddress(true);
                if (taken.add(s.getLocalPort())) {
                    return s.getLocalPort();
                }
            }
        }
    }

    /** {@code host:port} of the PLAINTEXT listener. */
    public String bootstrapServers() {
        return bootstrapServers;
    }

    /** {@code host:port} of the listener named {@code listener} (its security protocol, or PLAINTEXT). */
    public String bootstrapServers(String listener) {
        String address = listeners.get(listener);
        if (address == null) {
            throw new IllegalArgumentException("no listener " + listener + " (there are " + listeners.keySet() + ")");
        }
        return address;
    }

    public Path dataDir() {
        return dataDir;
    }

    /** An admin client owned by this broker (closed with it). */
    public Admin admin() {
        return admin;
    }

    /** Creates {@code name} with replication factor 1 and waits for it; an existing topic is left as it is. */
    public void createTopic(String name, int partitions) {
        createTopic(name, partitions, Map.of());
    }

    /** As {@link #createTopic(String, int)} with topic configs (for example {@code cleanup.policy}). */
    public void createTopic(String name, int partitions, Map<String, String> configs) {
        NewTopic topic = new NewTopic(name, partitions, (short) 1).configs(configs);
        try {
            admin.createTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw new IllegalStateException("cannot create topic " + name, e.getCause());
            }
        } catch (TimeoutException e) {
            throw new IllegalStateException("topic " + name + " not created within 30 s", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while creating topic " + name, e);
        }
        awaitLeaders(name);
    }

    /**
     * Waits until the broker's own metadata gives every partition of {@code name} a leader: a
     * producer that sends earlier can get NOT_LEADER_OR_FOLLOWER, and an idempotent one then
     * OutOfOrderSequence (seen once in TrainingStreamTest on a topic created just before).
     */
    private void awaitLeaders(String name) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            try {
                var d = admin.describeTopics(List.of(name)).allTopicNames().get(10, TimeUnit.SECONDS).get(name);
                if (d != null && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty())) {
                    return;
                }
            } catch (ExecutionException | TimeoutException e) {
                // not visible yet: ask again
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for the leaders of " + name, e);
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("topic " + name + " has partitions without a leader after 30 s");
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for the leaders of " + name, e);
            }
        }
    }

    /** Stops the broker and waits for it; the data directory stays (the caller owns it). */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        admin.close(Duration.ofSeconds(5));
        server.shutdown();
        server.awaitShutdown();
    }
}
