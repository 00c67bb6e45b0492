package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	yaml "github.com/oasdiff/yaml3"

	"github.com/botfleet/botfleet/internal/config"
)

// There is no container engine here: these tests parse the Dockerfile, docker-compose.yml
// and deploy/kubernetes/ and check what a typo would break: the commands and probes the
// containers run exist as botfleet subcommands and flags, the probes hit /healthz and
// /readyz, the env keys are real settings, the grace periods outlast SHUTDOWN_TIMEOUT.

const repoRoot = "../.."

// botfleetArgsError reports whether args (without the program name) is a botfleet command
// line that parses: the subcommand exists and takes these flags (run with --help).
func botfleetArgsError(args []string) error {
	if len(args) == 0 {
		return errors.New("no botfleet command")
	}
	var out bytes.Buffer
	if err := run(context.Background(), append(slices.Clone(args), "--help"), func(string) string { return "" }, &out, &out); err != nil {
		return err
	}
	// An unknown subcommand would print the root's help, which lists "Available Commands".
	if strings.Contains(out.String(), "Available Commands") {
		return errors.New("not a subcommand")
	}
	return nil
}

func checkBotfleetArgs(t *testing.T, where string, args []string) {
	t.Helper()
	if err := botfleetArgsError(args); err != nil {
		t.Errorf("%s: `botfleet %s`: %v", where, strings.Join(args, " "), err)
	}
}

func TestBotfleetArgsError(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"healthcheck", "--worker"}, {"emulator", "--addr", "0.0.0.0:8081"}} {
		if err := botfleetArgsError(args); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	for _, args := range [][]string{{"serv"}, {"healthcheck", "--wroker"}, {}} {
		if botfleetArgsError(args) == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// settingNames are the environment variables config.Config reads (its env tags, nested
// structs included).
func settingNames() map[string]bool {
	names := map[string]bool{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			if n := f.Tag.Get("env"); n != "" {
				names[prefix+strings.Split(n, ",")[0]] = true
			} else if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+f.Tag.Get("envPrefix"))
			}
		}
	}
	walk(reflect.TypeOf(config.Config{}), "")
	return names
}

func TestDockerfile(t *testing.T) {
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	df, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	arg := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindSubmatch(df)
	if goVersion == nil || arg == nil || string(arg[1]) != string(goVersion[1]) {
		t.Fatalf("Dockerfile GO_VERSION %q, go.mod go %q: want them equal", arg, goVersion)
	}
	for _, want := range []string{`-X main.version=${VERSION}`, "ARG VERSION", `ENTRYPOINT ["/botfleet"]`, "USER 65532:65532"} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

type composeFile struct {
	Services map[string]struct {
		Image           string            `yaml:"image"`
		Command         []string          `yaml:"command"`
		Environment     map[string]string `yaml:"environment"`
		Ports           []string          `yaml:"ports"`
		ContainerName   string            `yaml:"container_name"`
		Restart         string            `yaml:"restart"`
		StopGracePeriod string            `yaml:"stop_grace_period"`
		Healthcheck     struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
	} `yaml:"services"`
}

func TestDockerCompose(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	settings := settingNames()
	for _, name := range []string{"migrate", "serve", "worker", "emulator"} {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml: no service %s", name)
		}
		if !strings.HasPrefix(s.Image, "botfleet:") {
			t.Errorf("%s: image %q, want botfleet:...", name, s.Image)
		}
		checkBotfleetArgs(t, "compose "+name+" command", s.Command)
		for k := range s.Environment {
			if !settings[k] {
				t.Errorf("compose %s: environment %s is not a botfleet setting", name, k)
			}
		}
		if name == "migrate" {
			if s.Restart != "no" || s.DependsOn["postgres"].Condition != "service_healthy" {
				t.Errorf("migrate must be one-shot (restart: \"no\") after a healthy postgres: %+v", s)
			}
			continue
		}
		hc := s.Healthcheck.Test
		if len(hc) < 3 || hc[0] != "CMD" || hc[1] != "/botfleet" {
			t.Errorf("compose %s: healthcheck %v, want [CMD /botfleet healthcheck ...] (distroless: no shell)", name, hc)
		} else {
			checkBotfleetArgs(t, "compose "+name+" healthcheck", hc[2:])
		}
		if name == "serve" || name == "worker" {
			if s.DependsOn["migrate"].Condition != "service_completed_successfully" {
				t.Errorf("compose %s must wait for migrate to complete", name)
			}
			grace, err := time.ParseDuration(s.StopGracePeriod)
			shutdown, err2 := time.ParseDuration(s.Environment["SHUTDOWN_TIMEOUT"])
			if err != nil || err2 != nil || grace <= shutdown {
				t.Errorf("compose %s: stop_grace_period %q must exceed SHUTDOWN_TIMEOUT %q", name, s.StopGracePeriod, s.Environment["SHUTDOWN_TIMEOUT"])
			}
		}
	}
	if w := c.Services["worker"]; len(w.Ports) > 0 || w.ContainerName != "" {
		t.Error("compose worker must scale (--scale worker=3): no ports, no container_name")
	}
	redis := strings.Join(c.Services["redis"].Command, " ")
	if !strings.Contains(redis, "--appendonly yes") || !strings.Contains(redis, "--maxmemory-policy noeviction") {
		t.Errorf("compose redis: %q, want AOF and noeviction", redis)
	}
}

// k8sObject is the part of a Kubernetes manifest the test reads.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template k8sPodTemplate `yaml:"template"`
		Ports    []struct {
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		MinAvailable   *int `yaml:"minAvailable"`
		MaxUnavailable *int `yaml:"maxUnavailable"`
	} `yaml:"spec"`
	// A Service's spec.selector is a plain map; read it separately.
	ServiceSelector map[string]string `yaml:"-"`
}

type k8sPodTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
		Containers                    []struct {
			Name  string   `yaml:"name"`
			Image string   `yaml:"image"`
			Args  []string `yaml:"args"`
			Ports []struct {
				Name string `yaml:"name"`
			} `yaml:"ports"`
			EnvFrom []struct {
				ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
				SecretRef    *struct{ Name string } `yaml:"secretRef"`
			} `yaml:"envFrom"`
			LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
			ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
		} `yaml:"containers"`
	} `yaml:"spec"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
}

// readManifests decodes every document of the files kustomization.yaml lists, plus
// secret.example.yaml.
func readManifests(t *testing.T) map[string]k8sObject {
	t.Helper()
	dir := filepath.Join(repoRoot, "deploy", "kubernetes")
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(raw, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	objs := map[string]k8sObject{}
	for _, file := range append(kust.Resources, "secret.example.yaml") {
		f, err := os.Open(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		dec := yaml.NewDecoder(f)
		for {
			var node yaml.Node
			if err := dec.Decode(&node); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			var o k8sObject
			if err := node.Decode(&o); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if o.Kind == "Service" {
				var svc struct {
					Spec struct {
						Selector map[string]string `yaml:"selector"`
					} `yaml:"spec"`
				}
				if err := node.Decode(&svc); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				o.ServiceSelector = svc.Spec.Selector
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: a document without apiVersion, kind or metadata.name", file)
			}
			objs[o.Kind+"/"+o.Metadata.Name] = o
		}
	}
	return objs
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesManifests(t *testing.T) {
	objs := readManifests(t)
	settings := settingNames()
	cm, ok := objs["ConfigMap/botfleet"]
	if !ok {
		t.Fatal("no ConfigMap botfleet")
	}
	secret := objs["Secret/botfleet"]
	for _, o := range []k8sObject{cm, secret} {
		for k := range o.Data {
			if !settings[k] {
				t.Errorf("ConfigMap %s: %s is not a botfleet setting", o.Metadata.Name, k)
			}
		}
	}
	shutdown, err := time.ParseDuration(cm.Data["SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("ConfigMap SHUTDOWN_TIMEOUT: %v", err)
	}

	want := map[string]string{"Deployment/botfleet-serve": "serve", "Deployment/botfleet-worker": "worker", "Job/botfleet-migrate": "migrate"}
	for key, cmd := range want {
		o, ok := objs[key]
		if !ok {
			t.Fatalf("no %s", key)
		}
		pod := o.Spec.Template
		if len(pod.Spec.Containers) != 1 {
			t.Fatalf("%s: want one container", key)
		}
		c := pod.Spec.Containers[0]
		if c.Image != "botfleet" || len(c.Args) == 0 || c.Args[0] != cmd {
			t.Errorf("%s: image %q args %v, want botfleet %s", key, c.Image, c.Args, cmd)
		}
		checkBotfleetArgs(t, key, c.Args)
		var cmRef, secRef bool
		for _, e := range c.EnvFrom {
			cmRef = cmRef || (e.ConfigMapRef != nil && e.ConfigMapRef.Name == "botfleet")
			secRef = secRef || (e.SecretRef != nil && e.SecretRef.Name == "botfleet")
		}
		if !cmRef || !secRef {
			t.Errorf("%s: envFrom must use ConfigMap and Secret botfleet", key)
		}
		if o.Kind != "Deployment" {
			continue
		}
		if !subset(o.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
			t.Errorf("%s: selector %v does not match the pod labels %v", key, o.Spec.Selector.MatchLabels, pod.Metadata.Labels)
		}
		if time.Duration(pod.Spec.TerminationGracePeriodSeconds)*time.Second <= shutdown {
			t.Errorf("%s: terminationGracePeriodSeconds %d must exceed SHUTDOWN_TIMEOUT %s", key, pod.Spec.TerminationGracePeriodSeconds, shutdown)
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Fatalf("%s: liveness and readiness probes required", key)
		}
		switch cmd {
		case "serve":
			lp, rp := c.LivenessProbe.HTTPGet, c.ReadinessProbe.HTTPGet
			if lp == nil || lp.Path != "/healthz" || rp == nil || rp.Path != "/readyz" {
				t.Errorf("%s: want liveness GET /healthz and readiness GET /readyz", key)
			} else if len(c.Ports) == 0 || c.Ports[0].Name != lp.Port || rp.Port != lp.Port {
				t.Errorf("%s: probes use port %q, the container's port is %v", key, lp.Port, c.Ports)
			}
			svc, ok := objs["Service/botfleet"]
			if !ok || !subset(svc.ServiceSelector, pod.Metadata.Labels) || len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].TargetPort != c.Ports[0].Name {
				t.Errorf("Service botfleet must select the serve pods and target their port %q", c.Ports[0].Name)
			}
		case "worker":
			for _, p := range []*k8sProbe{c.LivenessProbe, c.ReadinessProbe} {
				if p.Exec == nil || len(p.Exec.Command) < 2 || p.Exec.Command[0] != "/botfleet" {
					t.Errorf("%s: want exec probes running /botfleet healthcheck", key)
					continue
				}
				checkBotfleetArgs(t, key+" probe", p.Exec.Command[1:])
			}
		}
		var pdb bool
		for _, o := range objs {
			if o.Kind == "PodDisruptionBudget" && subset(o.Spec.Selector.MatchLabels, pod.Metadata.Labels) &&
				(o.Spec.MinAvailable != nil || o.Spec.MaxUnavailable != nil) {
				pdb = true
			}
		}
		if !pdb {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", key)
		}
	}
}
