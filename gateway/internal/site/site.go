// Package site serves what the browser loads besides the API: the web page's static files, /ui-config.json (what
// the page may offer) and /openapi.json (the merged OpenAPI description of every service).
package site

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
)

// ContentSecurityPolicy lets the page load only its own files (inline styles and data: images aside) and talk only
// to its own origin.
const ContentSecurityPolicy = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"

// UIConfig is what /ui-config.json tells the page.
type UIConfig struct {
	DevSignIn bool `json:"dev_sign_in"`
}

// UIConfigHandler serves cfg as JSON.
func UIConfigHandler(cfg UIConfig) http.Handler {
	body, _ := json.Marshal(cfg) // a struct of a bool always marshals
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	})
}

// OpenAPIHandler serves the OpenAPI document.
func OpenAPIHandler(document []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(document)
	})
}

// StaticHandler serves the files of dir, index.html for a folder, and never a folder listing; an empty dir serves
// nothing (404).
func StaticHandler(dir string) http.Handler {
	if dir == "" {
		return http.NotFoundHandler()
	}
	files := http.FileServerFS(noListing{os.DirFS(dir)})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// The page's entry point changes with every build; hashed assets may be cached.
		if strings.HasSuffix(r.URL.Path, "/") || path.Ext(r.URL.Path) == ".html" {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}

// SecurityHeaders adds the Content-Security-Policy and nosniff to every answer.
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", ContentSecurityPolicy)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// noListing makes a folder without index.html look absent, so its file names are never listed.
type noListing struct{ fs.FS }

func (n noListing) Open(name string) (fs.File, error) {
	file, err := n.FS.Open(name)
	if err != nil {
		return nil, err
	}
	info, err := file.Stat()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	if info.IsDir() {
		index, err := n.FS.Open(path.Join(name, "index.html"))
		if err != nil {
			_ = file.Close()
			return nil, errors.Join(fs.ErrNotExist, err)
		}
		_ = index.Close()
	}
	return file, nil
}
